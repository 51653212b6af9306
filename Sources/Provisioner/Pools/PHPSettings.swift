/// `[php]`: the PHP-FPM versions installed, one `[php.versions."X.Y"]` table each, and
/// the one new tenants get.
public struct PHPSettings: ConfigSection {
    public static let name = "php"

    /// One installed PHP-FPM. Every key but `service` is required in the file.
    public struct Version: Codable, Sendable, Equatable {
        public var binary: String
        public var mainConf: String
        public var poolDir: String
        public var socketDir: String
        public var pidFile: String
        /// The systemd unit; `""`: desactl runs php-fpm itself (a sandbox). Defaults to `phpX.Y-fpm`.
        public var service: String

        public init(binary: String, mainConf: String, poolDir: String, socketDir: String, pidFile: String, service: String) {
            self.binary = binary
            self.mainConf = mainConf
            self.poolDir = poolDir
            self.socketDir = socketDir
            self.pidFile = pidFile
            self.service = service
        }

        enum CodingKeys: String, CodingKey {
            case binary, mainConf = "main_conf", poolDir = "pool_dir", socketDir = "socket_dir", pidFile = "pid_file", service
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            // The table's own name is the version: [php.versions."8.2"].
            let version = decoder.codingPath.last?.stringValue ?? ""
            binary = try c.decode(String.self, forKey: .binary)
            mainConf = try c.decode(String.self, forKey: .mainConf)
            poolDir = try c.decode(String.self, forKey: .poolDir)
            socketDir = try c.decode(String.self, forKey: .socketDir)
            pidFile = try c.decode(String.self, forKey: .pidFile)
            service = try c.value(.service, or: "php\(version)-fpm")
        }
    }

    /// The version new tenants get; `versions` must configure it.
    public var `default` = "8.2"
    /// When the file has `[php.versions]` tables, they replace these defaults entirely.
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

    enum CodingKeys: String, CodingKey { case `default`, versions }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = Self()
        `default` = try c.value(.default, or: d.default)
        versions = try c.value(.versions, or: d.versions)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(`default`, forKey: .default)
        var vs = c.nestedContainer(keyedBy: ConfigKey.self, forKey: .versions)
        for (v, p) in versions.sorted(by: { $0.key < $1.key }) { try vs.encode(p, forKey: ConfigKey(v)) }
    }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        for v in versions.keys.sorted() {
            do { try Names.validatePHPVersion(v) } catch let e as DesaError { throw fail("php.versions: \(e.message)") }
        }
        guard versions[`default`] != nil else { throw fail("php.default is \(`default`), which php.versions does not configure") }
        for (v, p) in versions.sorted(by: { $0.key < $1.key }) {
            let k = "php.versions.\"\(v)\""
            try PathGrammar.check([(k + ".binary", p.binary), (k + ".main_conf", p.mainConf), (k + ".pool_dir", p.poolDir),
                                   (k + ".socket_dir", p.socketDir), (k + ".pid_file", p.pidFile)])
            if !Config.isUnitName(p.service) { throw fail("\(k).service \(Quote.show(p.service)) is not a systemd unit name") }
        }
    }
}

extension Config {
    /// `[php]`, the pools capability's section.
    public var php: PHPSettings {
        get { section(PHPSettings.self) }
        set { set(newValue) }
    }
}
