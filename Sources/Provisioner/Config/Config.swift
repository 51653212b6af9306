import Foundation
import TOMLKit

/// Everything that differs between a sandbox and a production server. The same code
/// serves both; only these values change. Read from TOML (`/etc/desa/desa.toml`).
public struct Config: Sendable, Equatable {
    public enum Mode: String, Sendable { case sandbox, production }

    public struct PHPVersion: Sendable, Equatable {
        public var binary: String
        public var mainConf: String
        public var poolDir: String
        public var socketDir: String
        public var pidFile: String
        public var service: String
    }

    public var path: String = "/etc/desa/desa.toml"
    public var mode: Mode = .production
    public var regencyCode = "32.04"
    public var domain = "bandungkab.go.id"

    public var stateDir = "/var/lib/desa"
    public var webRoot = "/srv/desa"
    public var archiveDir = "/var/lib/desa/archive"
    public var acmeRoot = "/var/lib/desa/acme"
    public var logDir = "/var/log/desa"
    public var templates = "/usr/share/desa/templates"
    public var operatorTemplates: String? = nil

    public var userPrefix = "desa"
    public var uidMin = 200_000
    public var uidMax = 299_999
    public var webGroup = "www-data"
    public var sysusersFile = "/etc/sysusers.d/desa.conf"
    public var passwdFile = "/etc/passwd"

    public var nginxBinary = "/usr/sbin/nginx"
    public var nginxMainConf = "/etc/nginx/nginx.conf"
    public var nginxPrefix: String? = nil
    public var nginxSitesDir = "/etc/nginx/desa"
    public var nginxPidFile = "/run/nginx.pid"
    public var nginxListen = "80"
    public var probeAddress = "127.0.0.1:80"
    public var fastcgiParams = "/etc/nginx/fastcgi_params"
    public var nginxService = "nginx"
    /// nginx's own error log, quoted when a reload does not take.
    public var nginxErrorLog = "/var/log/nginx/error.log"
    /// `tenant`: an error log in each tenant's logs/ (one descriptor per tenant in every
    /// nginx process, twice during a reload); `shared`: one file for all tenants, for
    /// servers with more tenants than nginx may open files.
    public var tenantErrorLogs = "tenant"
    /// nginx's `server_names_hash_bucket_size` (the sandbox writes it; in production it
    /// must match nginx.conf). It bounds how long a server name may be.
    public var serverNamesHashBucketSize = 128

    public var defaultPHP = "8.2"
    public var php: [String: PHPVersion] = [
        "8.2": PHPVersion(binary: "/usr/sbin/php-fpm8.2", mainConf: "/etc/php/8.2/fpm/php-fpm.conf",
                          poolDir: "/etc/php/8.2/fpm/pool.d", socketDir: "/run/php",
                          pidFile: "/run/php/php8.2-fpm.pid", service: "php8.2-fpm"),
    ]

    public init() {}

    public var databasePath: String { stateDir + "/state.sqlite" }
    public var lockPath: String { stateDir + "/lock" }
    public var rollbackDir: String { stateDir + "/rollback" }
    /// Where the logs that root-run masters open live, one directory per tenant:
    /// outside the homes, so no tenant can put a link where nginx or php-fpm write.
    public var tenantLogRoot: String { logDir + "/tenants" }

    /// The longest server name nginx can hash with `serverNamesHashBucketSize`: an entry
    /// takes a pointer, the name and two length bytes aligned to 8, and the bucket needs
    /// a pointer of its own (ngx_hash_init).
    public var maxServerNameLength: Int { serverNamesHashBucketSize - 18 }

    public func phpVersion(_ v: String) throws -> PHPVersion {
        guard let p = php[v] else {
            throw DesaError.invalid("PHP \(v) is not configured; configured versions: \(php.keys.sorted().joined(separator: ", "))")
        }
        return p
    }

    /// Loads and validates a config file. Errors name the file and the key.
    public static func load(path: String) throws -> Config {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DesaError(.config, "cannot read config \(path); pass --config PATH or set DESA_CONFIG (a sandbox: desactl sandbox init DIR)")
        }
        var c = try parse(text, source: path)
        c.path = path
        return c
    }

    public static func parse(_ text: String, source: String = "config") throws -> Config {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw DesaError(.config, "\(source): \(e.description) at line \(e.source.begin.line)")
        }
        var c = Config()
        let r = TableReader(table: table, source: source)
        c.mode = try Mode(rawValue: r.string("mode") ?? c.mode.rawValue).orThrow(DesaError(.config, "\(source): mode must be sandbox or production"))
        c.regencyCode = try r.string("regency.code") ?? c.regencyCode
        c.domain = try r.string("regency.domain") ?? c.domain
        c.stateDir = try r.string("paths.state_dir") ?? c.stateDir
        c.webRoot = try r.string("paths.web_root") ?? c.webRoot
        c.archiveDir = try r.string("paths.archive_dir") ?? c.stateDir + "/archive"
        c.acmeRoot = try r.string("paths.acme_root") ?? c.stateDir + "/acme"
        c.logDir = try r.string("paths.log_dir") ?? c.logDir
        c.templates = try r.string("paths.templates") ?? c.templates
        c.operatorTemplates = try r.string("paths.operator_templates").flatMap { $0.isEmpty ? nil : $0 }
        c.userPrefix = try r.string("users.prefix") ?? c.userPrefix
        c.uidMin = try r.int("users.uid_min") ?? c.uidMin
        c.uidMax = try r.int("users.uid_max") ?? c.uidMax
        c.webGroup = try r.string("users.web_group") ?? c.webGroup
        c.sysusersFile = try r.string("users.sysusers_file") ?? c.sysusersFile
        c.passwdFile = try r.string("users.passwd_file") ?? c.passwdFile
        c.nginxBinary = try r.string("nginx.binary") ?? c.nginxBinary
        c.nginxMainConf = try r.string("nginx.main_conf") ?? c.nginxMainConf
        c.nginxPrefix = try r.string("nginx.prefix").flatMap { $0.isEmpty ? nil : $0 }
        c.nginxSitesDir = try r.string("nginx.sites_dir") ?? c.nginxSitesDir
        c.nginxPidFile = try r.string("nginx.pid_file") ?? c.nginxPidFile
        c.nginxListen = try r.string("nginx.listen") ?? c.nginxListen
        c.probeAddress = try r.string("nginx.probe") ?? c.probeAddress
        c.fastcgiParams = try r.string("nginx.fastcgi_params") ?? c.fastcgiParams
        c.nginxService = try r.string("nginx.service") ?? c.nginxService
        c.nginxErrorLog = try r.string("nginx.error_log_file") ?? c.nginxErrorLog
        c.tenantErrorLogs = try r.string("nginx.tenant_error_logs") ?? c.tenantErrorLogs
        c.serverNamesHashBucketSize = try r.int("nginx.server_names_hash_bucket_size") ?? c.serverNamesHashBucketSize
        guard ["tenant", "shared"].contains(c.tenantErrorLogs) else {
            throw DesaError(.config, "\(source): nginx.tenant_error_logs must be tenant or shared")
        }
        c.defaultPHP = try r.string("php.default") ?? c.defaultPHP
        if let versions = try r.table("php.versions") {
            c.php = [:]
            for key in versions.keys {
                let base = "php.versions.\(key)"
                let vr = TableReader(table: try r.table(base)!, source: source, prefix: base)
                try Names.validatePHPVersion(key)
                c.php[key] = PHPVersion(
                    binary: try vr.required("binary"), mainConf: try vr.required("main_conf"),
                    poolDir: try vr.required("pool_dir"), socketDir: try vr.required("socket_dir"),
                    pidFile: try vr.required("pid_file"), service: try vr.string("service") ?? "php\(key)-fpm")
            }
        }
        try c.validate(source: source)
        return c
    }

    func validate(source: String) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, "\(source): \(m)") }
        do {
            try VillageCode.validateRegency(regencyCode)
            try Names.validateDomain(domain)
            try Names.validateUserPrefix(userPrefix)
            if userPrefix.count + 10 > 32 { throw fail("users.prefix is too long for 32-character user names") }
        } catch let e as DesaError { throw fail(e.message) }
        guard uidMin >= 1000, uidMax > uidMin, uidMax < 4_294_967_294 else {
            throw fail("users.uid_min/uid_max must be a range above 999 (got \(uidMin)-\(uidMax))")
        }
        guard php[defaultPHP] != nil else { throw fail("php.default is \(defaultPHP), which php.versions does not configure") }
        // Every value that reaches a template or a command line passes a strict grammar.
        var paths: [(String, String)] = [
            ("paths.state_dir", stateDir), ("paths.web_root", webRoot), ("paths.archive_dir", archiveDir),
            ("paths.acme_root", acmeRoot), ("paths.log_dir", logDir), ("paths.templates", templates),
            ("users.sysusers_file", sysusersFile), ("users.passwd_file", passwdFile),
            ("nginx.binary", nginxBinary), ("nginx.main_conf", nginxMainConf), ("nginx.sites_dir", nginxSitesDir),
            ("nginx.pid_file", nginxPidFile), ("nginx.fastcgi_params", fastcgiParams), ("nginx.error_log_file", nginxErrorLog),
        ]
        if let o = operatorTemplates { paths.append(("paths.operator_templates", o)) }
        if let p = nginxPrefix { paths.append(("nginx.prefix", p)) }
        for (v, p) in php.sorted(by: { $0.key < $1.key }) {
            let k = "php.versions.\"\(v)\""
            paths += [(k + ".binary", p.binary), (k + ".main_conf", p.mainConf), (k + ".pool_dir", p.poolDir),
                      (k + ".socket_dir", p.socketDir), (k + ".pid_file", p.pidFile)]
            if !Self.isUnitName(p.service) { throw fail("\(k).service \(Quote.show(p.service)) is not a systemd unit name") }
        }
        for (key, p) in paths where !PathGrammar.isSafeAbsolute(p) {
            throw fail("\(key) \(Quote.show(p)) must be absolute and contain only letters, digits and / . _ - +")
        }
        if !Self.isUnitName(nginxService) { throw fail("nginx.service \(Quote.show(nginxService)) is not a systemd unit name") }
        let groupOK = (1...32).contains(webGroup.count) && webGroup.first!.isLetter
            && webGroup.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        if !groupOK { throw fail("users.web_group \(Quote.show(webGroup)) is not a group name") }
        guard [64, 128, 256, 512].contains(serverNamesHashBucketSize) else {
            throw fail("nginx.server_names_hash_bucket_size must be 64, 128, 256 or 512 (got \(serverNamesHashBucketSize))")
        }
        let longest = 63 + 1 + domain.count
        if longest > maxServerNameLength {
            throw fail("regency.domain \(domain) makes server names of up to \(longest) characters, more than nginx.server_names_hash_bucket_size \(serverNamesHashBucketSize) holds (\(maxServerNameLength)); raise it in nginx.conf and here")
        }
        guard ProbeAddress(probeAddress) != nil else { throw fail("nginx.probe must be HOST:PORT, like 127.0.0.1:8080") }
        let listenOK = nginxListen.allSatisfy { $0.isASCII && ($0.isNumber || $0 == "." || $0 == ":" || $0.isLetter || $0 == "[" || $0 == "]" || $0 == " ") }
        if !listenOK || nginxListen.isEmpty { throw fail("nginx.listen \(Quote.show(nginxListen)) is not an address nginx understands") }
    }
}

extension Config {
    /// A systemd unit name as desa passes it to systemctl (empty: desactl runs the service itself).
    static func isUnitName(_ s: String) -> Bool {
        s.count <= 128 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "@._-:".contains($0)) }
            && !s.hasPrefix("-")
    }
}

/// Paths that reach configs and command lines: absolute, no `..`, a strict alphabet.
public enum PathGrammar {
    public static func isSafeAbsolute(_ p: String) -> Bool {
        guard p.hasPrefix("/"), p.count < 512 else { return false }
        if p.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) { return false }
        return p.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "/._-+".contains($0)) }
    }
}

/// `HOST:PORT` where the health probe connects.
public struct ProbeAddress: Sendable {
    public var host: String
    public var port: UInt16
    public init?(_ s: String) {
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else { return nil }
        host = String(s[..<colon])
        self.port = port
        if host.isEmpty { return nil }
    }
}

struct TableReader {
    let table: TOMLTable
    let source: String
    var prefix: String = ""

    private func lookup(_ dotted: String) -> TOMLValueConvertible? {
        var t: TOMLTable = table
        let parts = dotted.split(separator: ".").map(String.init)
        // Keys like php.versions."8.2" are looked up by table, not by dots.
        for p in parts.dropLast() { guard let next = t[p]?.table else { return nil }; t = next }
        return t[parts.last!]
    }
    private func name(_ k: String) -> String { prefix.isEmpty ? k : prefix + "." + k }

    func string(_ key: String) throws -> String? {
        guard let v = lookup(key) else { return nil }
        guard let s = v.string else { throw DesaError(.config, "\(source): \(name(key)) must be a string") }
        return s
    }
    func required(_ key: String) throws -> String {
        guard let s = try string(key) else { throw DesaError(.config, "\(source): \(name(key)) is missing") }
        return s
    }
    func int(_ key: String) throws -> Int? {
        guard let v = lookup(key) else { return nil }
        guard let i = v.int else { throw DesaError(.config, "\(source): \(name(key)) must be an integer") }
        return i
    }
    func table(_ key: String) throws -> TOMLTable? {
        if key.hasPrefix("php.versions."), let versions = lookup("php.versions")?.table {
            return versions[String(key.dropFirst("php.versions.".count))]?.table
        }
        guard let v = lookup(key) else { return nil }
        guard let t = v.table else { throw DesaError(.config, "\(source): \(name(key)) must be a table") }
        return t
    }
}

extension Optional {
    func orThrow(_ e: @autoclosure () -> Error) throws -> Wrapped {
        guard let v = self else { throw e() }
        return v
    }
}
