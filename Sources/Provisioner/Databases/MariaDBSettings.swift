import Foundation

/// `[mariadb]`: the MariaDB server tenants' databases live on, how desa signs in to it as
/// administrator, and how databases and users are named.
public struct MariaDBSettings: ConfigSection {
    public static let name = "mariadb"

    /// Where database and user names come from: the village code's ten digits
    /// (`desa_3204082001`, always valid) or the tenant's slug (`desa_cileunyi_kulon`).
    public enum Naming: String, ConfigEnum { case code, slug }

    /// Whether tenants may have databases (`db create`, `--with-db`): off by default, so a
    /// server without MariaDB never asks for one.
    public var enabled = false
    /// The server's Unix socket; `""` in the file: use `host` and `port`.
    public var socket: String? = "/run/mysqld/mysqld.sock"
    public var host = "127.0.0.1"
    public var port = 3306
    /// The administrator desa signs in as. Without `admin_credentials` that is the
    /// server's unix-socket authentication as root (Debian's default for `root`).
    public var adminUser = "root"
    /// A file (mode 0600, root's) in MySQL's option-file form with `user` and `password`
    /// under `[client]`; `""`: unix-socket authentication.
    public var adminCredentials: String? = nil
    public var naming = Naming.code
    /// What database and user names start with: lowercase letters, digits and `_`.
    public var prefix = "desa_"
    public var dumpBinary = "/usr/bin/mariadb-dump"
    public var clientBinary = "/usr/bin/mariadb"
    /// The systemd unit of the server; `""`: desactl runs mariadbd itself (a sandbox).
    public var service = "mariadb"
    /// The server's binary, data directory and pid file (a sandbox starts it with these).
    public var serverBinary = "/usr/sbin/mariadbd"
    public var dataDir = "/var/lib/mysql"
    public var pidFile = "/run/mysqld/mysqld.pid"

    public init() {}

    /// Where tenants and desa connect.
    public var address: MariaDBAddress {
        if let s = socket { return .socket(s) }
        return .tcp(host: host, port: port)
    }

    enum CodingKeys: String, CodingKey {
        case enabled, socket, host, port, adminUser = "admin_user", adminCredentials = "admin_credentials", naming, prefix
        case dumpBinary = "dump_binary", clientBinary = "client_binary", service
        case serverBinary = "server_binary", dataDir = "data_dir", pidFile = "pid_file"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self), d = Self()
        enabled = try c.value(.enabled, or: d.enabled)
        socket = try c.contains(.socket) ? c.optionalPath(.socket) : d.socket
        host = try c.value(.host, or: d.host)
        port = try c.value(.port, or: d.port)
        adminUser = try c.value(.adminUser, or: d.adminUser)
        adminCredentials = try c.optionalPath(.adminCredentials)
        naming = try c.value(.naming, or: d.naming)
        prefix = try c.value(.prefix, or: d.prefix)
        dumpBinary = try c.value(.dumpBinary, or: d.dumpBinary)
        clientBinary = try c.value(.clientBinary, or: d.clientBinary)
        service = try c.value(.service, or: d.service)
        serverBinary = try c.value(.serverBinary, or: d.serverBinary)
        dataDir = try c.value(.dataDir, or: d.dataDir)
        pidFile = try c.value(.pidFile, or: d.pidFile)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(enabled, forKey: .enabled)
        try c.encode(socket ?? "", forKey: .socket)
        try c.encode(host, forKey: .host)
        try c.encode(port, forKey: .port)
        try c.encode(adminUser, forKey: .adminUser)
        try c.encode(adminCredentials ?? "", forKey: .adminCredentials)
        try c.encode(naming, forKey: .naming)
        try c.encode(prefix, forKey: .prefix)
        try c.encode(dumpBinary, forKey: .dumpBinary)
        try c.encode(clientBinary, forKey: .clientBinary)
        try c.encode(service, forKey: .service)
        try c.encode(serverBinary, forKey: .serverBinary)
        try c.encode(dataDir, forKey: .dataDir)
        try c.encode(pidFile, forKey: .pidFile)
    }

    /// The longest a database or user name may be: MariaDB allows 64 characters for a
    /// database and 80 for a user; desa keeps both within MySQL's 32 for users.
    public static let maxNameLength = 32

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
        var paths = [("mariadb.dump_binary", dumpBinary), ("mariadb.client_binary", clientBinary),
                     ("mariadb.server_binary", serverBinary), ("mariadb.data_dir", dataDir), ("mariadb.pid_file", pidFile)]
        if let s = socket { paths.append(("mariadb.socket", s)) }
        if let a = adminCredentials { paths.append(("mariadb.admin_credentials", a)) }
        try PathGrammar.check(paths)
        guard DatabaseNames.isName(prefix, allowEmpty: true), prefix.count <= 16 else {
            throw fail("mariadb.prefix \(Quote.show(prefix)) must be up to 16 lowercase letters, digits or _")
        }
        guard (1...65535).contains(port) else { throw fail("mariadb.port must be 1 to 65535 (got \(port))") }
        guard host == "localhost" || ProbeAddress(host + ":1") != nil else {
            throw fail("mariadb.host \(Quote.show(host)) must be an address on this host, like 127.0.0.1")
        }
        guard DatabaseNames.isName(adminUser, allowEmpty: false) else {
            throw fail("mariadb.admin_user \(Quote.show(adminUser)) must be lowercase letters, digits or _")
        }
        if !Config.isUnitName(service) { throw fail("mariadb.service \(Quote.show(service)) is not a systemd unit name") }
    }
}

/// How a tenant's database and user are named, and the one grammar they pass.
public enum DatabaseNames {
    /// Lowercase ASCII letters, digits and `_`.
    public static func isName(_ s: String, allowEmpty: Bool) -> Bool {
        (allowEmpty || !s.isEmpty) && s.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
    }

    /// The name a tenant's database (and its user) gets under `settings`.
    public static func name(for t: Tenant, _ settings: MariaDBSettings) throws -> String {
        let base: String
        switch settings.naming {
        case .code: base = t.code.filter(\.isNumber)
        case .slug: base = t.slug.replacingOccurrences(of: "-", with: "_")
        }
        let name = settings.prefix + base
        guard isName(name, allowEmpty: false), name.count <= MariaDBSettings.maxNameLength else {
            throw DesaError.invalid("the database name \(Quote.show(name)) for \(t.slug) is not 1 to \(MariaDBSettings.maxNameLength) lowercase letters, digits or _; use mariadb.naming = \"code\" or a shorter mariadb.prefix")
        }
        return name
    }
}

extension Config {
    /// `[mariadb]`, the databases capability's section.
    public var mariadb: MariaDBSettings {
        get { section(MariaDBSettings.self) }
        set { set(newValue) }
    }
}
