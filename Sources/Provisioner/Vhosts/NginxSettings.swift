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

    @Setting("binary", "nginx's executable", .path)
    public var binary = "/usr/sbin/nginx"
    @Setting("main_conf", "nginx's main configuration file", .path)
    public var mainConf = "/etc/nginx/nginx.conf"
    @Setting("prefix", "nginx's -p prefix; \"\": none", .path)
    public var prefix: String? = nil
    @Setting("sites_dir", "where the tenants' server blocks go (nginx.conf includes *.conf from here)", .path)
    public var sitesDir = "/etc/nginx/desa"
    @Setting("pid_file", "nginx's pid file", .path)
    public var pidFile = "/run/nginx.pid"
    @Setting("listen", "what the tenants' server blocks listen on: a port or ADDRESS:PORT")
    public var listen = "80"
    @Setting("probe", "HOST:PORT where apply and the health sweep ask nginx for each tenant")
    public var probe = "127.0.0.1:80"
    @Setting("fastcgi_params", "the FastCGI parameters file the server blocks include", .path)
    public var fastcgiParams = "/etc/nginx/fastcgi_params"
    @Setting("service", "nginx's systemd unit; \"\": desactl runs nginx itself (a sandbox)", .unit)
    public var service = "nginx"
    @Setting("error_log_file", "nginx's own error log, quoted when a reload does not take", .path)
    public var errorLogFile = "/var/log/nginx/error.log"
    @Setting("tenant_error_logs", "\"tenant\": an error log per tenant; \"shared\": one for all (see Limits)")
    public var tenantErrorLogs = TenantErrorLogs.tenant
    @Setting("server_names_hash_bucket_size", "must match nginx.conf (64, 128, 256 or 512); longer server names are refused")
    public var serverNamesHashBucketSize = 128

    public init() {}

    /// The longest server name nginx can hash with `serverNamesHashBucketSize`: an entry
    /// takes a pointer, the name and two length bytes aligned to 8, and the bucket needs
    /// a pointer of its own (ngx_hash_init).
    public var maxServerNameLength: Int { serverNamesHashBucketSize - 18 }

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
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
