/// `[nginx]`: the nginx that serves the tenants, and how desa talks to it.
public struct NginxSettings: ConfigSection {
    public static let name = "nginx"

    /// Where each tenant's nginx error log goes.
    public enum TenantErrorLogs: String, ConfigEnum {
        /// An error log in each tenant's log directory: one descriptor per tenant in every
        /// nginx process, twice during a reload.
        case tenant
        /// One file for all tenants, for servers with more tenants than nginx may open files.
        case shared
    }

    public var binary = "/usr/sbin/nginx"
    public var mainConf = "/etc/nginx/nginx.conf"
    /// nginx's `-p` prefix; `""` in the file means none.
    public var prefix: String? = nil
    public var sitesDir = "/etc/nginx/desa"
    public var pidFile = "/run/nginx.pid"
    public var listen = "80"
    /// `HOST:PORT` where apply verifies each tenant.
    public var probe = "127.0.0.1:80"
    public var fastcgiParams = "/etc/nginx/fastcgi_params"
    /// The systemd unit; `""`: desactl runs nginx itself (a sandbox).
    public var service = "nginx"
    /// nginx's own error log, quoted when a reload does not take.
    public var errorLogFile = "/var/log/nginx/error.log"
    public var tenantErrorLogs = TenantErrorLogs.tenant
    /// nginx's `server_names_hash_bucket_size` (the sandbox writes it; in production it
    /// must match nginx.conf). It bounds how long a server name may be: 64, 128, 256 or 512.
    public var serverNamesHashBucketSize = 128

    public init() {}

    /// The longest server name nginx can hash with `serverNamesHashBucketSize`: an entry
    /// takes a pointer, the name and two length bytes aligned to 8, and the bucket needs
    /// a pointer of its own (ngx_hash_init).
    public var maxServerNameLength: Int { serverNamesHashBucketSize - 18 }

    enum CodingKeys: String, CodingKey {
        case binary, mainConf = "main_conf", prefix, sitesDir = "sites_dir", pidFile = "pid_file", listen, probe
        case fastcgiParams = "fastcgi_params", service, errorLogFile = "error_log_file"
        case tenantErrorLogs = "tenant_error_logs", serverNamesHashBucketSize = "server_names_hash_bucket_size"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = Self()
        binary = try c.value(.binary, or: d.binary)
        mainConf = try c.value(.mainConf, or: d.mainConf)
        prefix = try c.optionalPath(.prefix)
        sitesDir = try c.value(.sitesDir, or: d.sitesDir)
        pidFile = try c.value(.pidFile, or: d.pidFile)
        listen = try c.value(.listen, or: d.listen)
        probe = try c.value(.probe, or: d.probe)
        fastcgiParams = try c.value(.fastcgiParams, or: d.fastcgiParams)
        service = try c.value(.service, or: d.service)
        errorLogFile = try c.value(.errorLogFile, or: d.errorLogFile)
        tenantErrorLogs = try c.value(.tenantErrorLogs, or: d.tenantErrorLogs)
        serverNamesHashBucketSize = try c.value(.serverNamesHashBucketSize, or: d.serverNamesHashBucketSize)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(binary, forKey: .binary)
        try c.encode(mainConf, forKey: .mainConf)
        try c.encode(prefix ?? "", forKey: .prefix)
        try c.encode(sitesDir, forKey: .sitesDir)
        try c.encode(pidFile, forKey: .pidFile)
        try c.encode(listen, forKey: .listen)
        try c.encode(probe, forKey: .probe)
        try c.encode(fastcgiParams, forKey: .fastcgiParams)
        try c.encode(service, forKey: .service)
        try c.encode(errorLogFile, forKey: .errorLogFile)
        try c.encode(tenantErrorLogs, forKey: .tenantErrorLogs)
        try c.encode(serverNamesHashBucketSize, forKey: .serverNamesHashBucketSize)
    }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        // Every value that reaches a template or a command line passes a strict grammar.
        var paths: [(String, String)] = [
            ("nginx.binary", binary), ("nginx.main_conf", mainConf), ("nginx.sites_dir", sitesDir),
            ("nginx.pid_file", pidFile), ("nginx.fastcgi_params", fastcgiParams), ("nginx.error_log_file", errorLogFile),
        ]
        if let p = prefix { paths.append(("nginx.prefix", p)) }
        try PathGrammar.check(paths)
        if !Config.isUnitName(service) { throw fail("nginx.service \(Quote.show(service)) is not a systemd unit name") }
        guard [64, 128, 256, 512].contains(serverNamesHashBucketSize) else {
            throw fail("nginx.server_names_hash_bucket_size must be 64, 128, 256 or 512 (got \(serverNamesHashBucketSize))")
        }
        let domain = config.regency.domain
        let longest = 63 + 1 + domain.count
        if longest > maxServerNameLength {
            throw fail("regency.domain \(domain) makes server names of up to \(longest) characters, more than nginx.server_names_hash_bucket_size \(serverNamesHashBucketSize) holds (\(maxServerNameLength)); raise it in nginx.conf and here")
        }
        guard ProbeAddress(probe) != nil else { throw fail("nginx.probe must be HOST:PORT, like 127.0.0.1:8080") }
        let listenOK = listen.allSatisfy { $0.isASCII && ($0.isNumber || $0 == "." || $0 == ":" || $0.isLetter || $0 == "[" || $0 == "]" || $0 == " ") }
        if !listenOK || listen.isEmpty { throw fail("nginx.listen \(Quote.show(listen)) is not an address nginx understands") }
    }
}

extension Config {
    /// `[nginx]`, the vhosts capability's section.
    public var nginx: NginxSettings {
        get { section(NginxSettings.self) }
        set { set(newValue) }
    }
}
