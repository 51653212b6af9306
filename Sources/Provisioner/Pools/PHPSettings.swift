/// `[php]`: the PHP-FPM versions installed, one `[php.versions."X.Y"]` table each, and
/// the one new tenants get.
public struct PHPSettings: ConfigSection {
    public static let name = "php"

    /// One installed PHP-FPM, `[php.versions."X.Y"]`. Every key but `service` is required.
    public struct Version: SettingsTable {
        @Setting("binary", "php-fpm's executable", .required, .path)
        public var binary = ""
        @Setting("main_conf", "its main configuration file", .required, .path)
        public var mainConf = ""
        @Setting("pool_dir", "where the tenants' pools go (php-fpm.conf includes *.conf from here)", .required, .path)
        public var poolDir = ""
        @Setting("socket_dir", "where the pools' sockets go", .required, .path)
        public var socketDir = ""
        @Setting("pid_file", "php-fpm's pid file", .required, .path)
        public var pidFile = ""
        @Setting("service", "the systemd unit (default phpX.Y-fpm); \"\": desactl runs php-fpm itself (a sandbox)", .unit)
        public var service = ""

        public init() {}

        public init(binary: String, mainConf: String, poolDir: String, socketDir: String, pidFile: String, service: String) {
            self.binary = binary
            self.mainConf = mainConf
            self.poolDir = poolDir
            self.socketDir = socketDir
            self.pidFile = pidFile
            self.service = service
        }

        public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
        public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

        public mutating func settingsDecoded(present: Set<String>, at path: [CodingKey]) throws {
            // The table's own name is the version: [php.versions."8.2"].
            if !present.contains("service") { service = "php\(path.last?.stringValue ?? "")-fpm" }
        }
    }

    /// Who runs the tenants' pools in production: one php-fpm master per PHP version (Debian's
    /// service), or a master per tenant in a systemd unit of its own, whose cgroup holds the
    /// tenant's memory, CPU and processes (`[quota]`'s limits). A sandbox always shares.
    public enum Masters: String, ConfigEnum { case shared, tenant }

    @Setting("masters", "production: \"tenant\": each tenant's PHP in a php-fpm master of its own (unit desa-phpX.Y-fpm@USER), whose cgroup the kernel holds to quota.memory, quota.cpu and quota.processes (about 10 MB more a tenant, idle); \"shared\": the PHP version's one master (phpX.Y-fpm), processes limited per user only. A sandbox always shares")
    public var masters = Masters.tenant
    @Setting("tenant_dir", "production, masters = \"tenant\": where the masters' configuration goes (VERSION/master.conf, VERSION/pools/USER.conf)", .path)
    public var tenantDir = "/etc/desa/php"

    @Setting("default", "the PHP version new tenants get; php.versions must configure it")
    public var `default` = "8.2"
    @Setting("versions", "one table per installed PHP-FPM; when the file has any, they replace these defaults")
    public var versions: [String: Version] = [
        "8.2": Version(binary: "/usr/sbin/php-fpm8.2", mainConf: "/etc/php/8.2/fpm/php-fpm.conf",
                       poolDir: "/etc/php/8.2/fpm/pool.d", socketDir: "/run/php",
                       pidFile: "/run/php/php8.2-fpm.pid", service: "php8.2-fpm"),
    ]


    public init() {}

    /// The settings of PHP `v`; throws `invalidInput` naming the configured ones.
    public func version(_ v: String) throws -> Version {
        guard let p = versions[v] else {
            throw DesaError.invalid("PHP \(v) is not configured; configured versions: \(versions.keys.sorted().joined(separator: ", "))")
        }
        return p
    }

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        for v in versions.keys.sorted() {
            do { try Names.validatePHPVersion(v) } catch let e as DesaError { throw fail("php.versions: \(e.message)") }
        }
        guard versions[`default`] != nil else { throw fail("php.default is \(`default`), which php.versions does not configure") }
        for (v, p) in versions.sorted(by: { $0.key < $1.key }) { try p.checkSettings("php.versions.\"\(v)\"") }
    }
}

extension Config {
    /// `[php]`, the pools capability's section.
    public var php: PHPSettings {
        get { section(PHPSettings.self) }
        set { set(newValue) }
    }
}
