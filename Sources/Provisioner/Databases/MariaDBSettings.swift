import Foundation

/// `[mariadb]`: the MariaDB server tenants' databases live on, how desa signs in to it as
/// administrator, and how databases and users are named.
public struct MariaDBSettings: ConfigSection {
    public static let name = "mariadb"

    /// Where database and user names come from: the village code's ten digits
    /// (`desa_3204082001`, always valid) or the tenant's slug (`desa_cileunyi_kulon`).
    public enum Naming: String, ConfigEnum { case code, slug }

    @Setting("enabled", "true: tenants may have databases (db create, --with-db); off, a server without MariaDB is never asked")
    public var enabled = false
    @Setting("socket", "the server's Unix socket; \"\": use host and port", .path)
    public var socket: String? = "/run/mysqld/mysqld.sock"
    @Setting("host", "the server's address on this host, without a socket")
    public var host = "127.0.0.1"
    @Setting("port", "the server's TCP port")
    public var port = 3306
    @Setting("admin_user", "the administrator desa signs in as, by unix-socket authentication unless admin_credentials")
    public var adminUser = "root"
    @Setting("admin_credentials", "a 0600 option file with user= and password= under [client]; \"\": unix-socket authentication", .path)
    public var adminCredentials: String? = nil
    @Setting("naming", "database and user names from the village \"code\" (always valid) or the \"slug\"")
    public var naming = Naming.code
    @Setting("prefix", "what database and user names start with: lowercase letters, digits, _")
    public var prefix = "desa_"
    @Setting("dump_binary", "mariadb-dump, for the dump a deleted database leaves in the archive", .path)
    public var dumpBinary = "/usr/bin/mariadb-dump"
    @Setting("client_binary", "the mariadb client", .path)
    public var clientBinary = "/usr/bin/mariadb"
    @Setting("service", "the server's systemd unit; \"\": desactl runs mariadbd itself (a sandbox)", .unit)
    public var service = "mariadb"
    @Setting("server_binary", "mariadbd (this and the next two: how a sandbox runs its own server)", .path)
    public var serverBinary = "/usr/sbin/mariadbd"
    @Setting("data_dir", "the server's data directory", .path)
    public var dataDir = "/var/lib/mysql"
    @Setting("pid_file", "the server's pid file", .path)
    public var pidFile = "/run/mysqld/mysqld.pid"

    public init() {}

    /// Where tenants and desa connect.
    public var address: MariaDBAddress {
        if let s = socket { return .socket(s) }
        return .tcp(host: host, port: port)
    }

    public init(from decoder: Decoder) throws { try self.init(settingsFrom: decoder) }
    public func encode(to encoder: Encoder) throws { try encodeSettings(to: encoder) }

    /// The longest a database or user name may be: MariaDB allows 64 characters for a
    /// database and 80 for a user; desa keeps both within MySQL's 32 for users.
    public static let maxNameLength = 32

    public func validate(in config: Config) throws {
        func fail(_ m: String) -> DesaError { DesaError(.config, m) }
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
