import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// A MariaDB database and user per tenant that asked for one (`db create`, `--with-db`),
/// with the user's password in one file in the tenant's home, `.my.cnf` (0600, the
/// tenant's: the `mariadb` client run as the tenant reads it, and so can its PHP).
///
/// Observe reads the server's databases, accounts and grants once; plan is pure. Every
/// statement is idempotent (`IF NOT EXISTS`), and a password is staged in the home as
/// `.my.cnf.desa-rotating` before the server gets it and renamed into place after: a run
/// killed or cut off by the server half-way leaves the staged file, and the next plan
/// sets a new password. Re-running always converges; no user is left that no file
/// knows the password of.
public struct DatabasesCapability: StatefulCapability, TenantLifecycle, HealthChecking {
    public struct Observation: Sendable {
        /// Why the server could not be read; nil when it was read (or not needed).
        public var unreachable: String?
        public var catalog = DatabaseCatalog()
        public var credentials: [String: FileStat] = [:]
    }

    /// Its part of the desired state: every tenant's database row (kept and deleted), and
    /// the tenants whose password this command replaces (`db rotate-password`).
    public struct State: Sendable {
        public var rows: [String: TenantDatabase] = [:]
        public var rotate: Set<String> = []
        public init(rows: [String: TenantDatabase] = [:], rotate: Set<String> = []) { self.rows = rows; self.rotate = rotate }
    }

    /// How the server's databases, accounts and grants are read: the real server, or a
    /// test's catalog (the planner's decisions are tested without MariaDB).
    let catalog: any DatabaseCatalogReading

    public init(catalog: any DatabaseCatalogReading = MariaDBCatalog()) { self.catalog = catalog }
    public var name: String { "databases" }
    public var settings: [any ConfigSection.Type] { [MariaDBSettings.self] }
    public var migrations: [StateMigration] { [TenantDatabase.migration] }
    public var healthChecks: [any TenantCheck] { [DatabaseCheck()] }

    public func load(_ db: Database, _ d: DesiredState) throws -> State {
        State(rows: try TenantDatabase.byCode(db))
    }

    public func check(_ options: TenantOptions, _ config: Config) throws {
        if options.withDB { try Self.require(config) }
    }

    /// `--with-db`: the new tenant gets a database row (or its deleted one back).
    public func created(_ t: Tenant, _ options: TenantOptions, _ db: Database, _ context: TenantChange) throws {
        if options.withDB { try Self.want(db, t, context) }
    }

    /// Its database is dumped into the archive and dropped with it.
    public func deleted(_ t: Tenant, _ db: Database, _ context: TenantChange) throws {
        try TenantDatabase.filter(Column("code") == t.code).updateAll(db, Column("desired").set(to: TenantDatabase.Desired.deleted.rawValue))
    }

    static func require(_ config: Config) throws {
        guard config.mariadb.enabled else {
            throw DesaError(.config, "databases are off: set mariadb.enabled = true in \(config.path) (and the server's socket or address under [mariadb])")
        }
    }

    /// The row that gives tenant `t` a database, named by the config (and checked not to
    /// collide with another tenant's), inserted or brought back.
    static func want(_ db: Database, _ t: Tenant, _ context: TenantChange) throws {
        if var row = try TenantDatabase.fetchOne(db, key: t.code) {
            if row.desired != .present { row.desired = .present; try row.update(db) }
            return
        }
        let name = try DatabaseNames.name(for: t, context.config.mariadb)
        if let other = try TenantDatabase.filter(Column("name") == name && Column("code") != t.code).fetchOne(db) {
            throw DesaError(.conflict, "the database name \(name) for \(t.slug) is already tenant \(other.code)'s")
        }
        try TenantDatabase(code: t.code, name: name, user: name, createdAt: context.now).insert(db)
    }

    /// The hosts each tenant's account is made for: the socket and loopback TCP.
    public static let hosts = ["localhost", "127.0.0.1"]
    public static let credentialsFile = ".my.cnf"
    public static let stagedFile = ".my.cnf.desa-rotating"

    public func services(_ config: Config) -> [ServiceSpec] {
        config.mariadb.enabled ? [.mariadb(config)] : []
    }

    /// The rows this plan cares about: tenants that are in `d` and have a row.
    func rows(_ d: DesiredState) -> [(Tenant, TenantDatabase)] {
        let rows = d.state(of: Self.self)?.rows ?? [:]
        return d.tenants.compactMap { t in rows[t.code].map { (t, $0) } }
    }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        let rows = rows(d)
        var out = Observation()
        guard !rows.isEmpty else { return out }
        out.credentials = host.stats(rows.flatMap { t, _ in
            [t.home(d.config) + "/" + Self.credentialsFile, t.home(d.config) + "/" + Self.stagedFile]
        })
        guard d.config.mariadb.enabled else {
            out.unreachable = "MariaDB is not enabled in \(d.config.path) (set mariadb.enabled = true)"
            return out
        }
        do {
            out.catalog = try catalog.read(d.config.mariadb)
        } catch {
            out.unreachable = Applier.message(error)
        }
        return out
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        let rotating = d.state(of: Self.self)?.rotate ?? []
        for (t, row) in rows(d) {
            let wanted = row.desired == .present && t.desired != .deleted
            let home = t.home(d.config)
            let exists = seen.catalog.databases.contains(row.name) || Self.hosts.contains { seen.catalog.accounts.contains("\(row.user)@\($0)") }
            if let why = seen.unreachable {
                // Nothing is known about this tenant's database: it cannot be converged.
                if wanted || row.desired == .deleted || t.desired == .deleted {
                    out.steps.append(.fail(t.code, "its database \(row.name) cannot be managed: \(why)"))
                }
                continue
            }
            guard wanted else {
                if exists {
                    let dump = t.archivePath(d.config, at: d.now) + "-database.sql"
                    out.steps.append(Step(t.code, "drop-database", .archive, .custom(DropDatabase(
                        name: row.name, user: row.user, dumpTo: dump,
                        credentialsIn: t.desired == .deleted ? nil : home))))
                }
                continue
            }
            if !seen.catalog.databases.contains(row.name) {
                out.steps.append(Step(t.code, "create-database", .files, .custom(CreateDatabase(name: row.name))))
            }
            let accountsMissing = Self.hosts.contains { !seen.catalog.accounts.contains("\(row.user)@\($0)") }
            let pattern = SQL.grantPattern(row.name)
            let grantsMissing = Self.hosts.contains { !seen.catalog.grants.contains("\(row.user)@\($0) \(pattern)") }
            let cred = seen.credentials[home + "/" + Self.credentialsFile]
            let credOK = cred.map { !$0.isDirectory && $0.uid == t.uid && $0.mode == 0o600 } ?? false
            let staged = seen.credentials[home + "/" + Self.stagedFile] != nil
            let rotate = rotating.contains(t.code)
            let newPassword = accountsMissing || !credOK || staged || rotate
            guard newPassword || grantsMissing else { continue }
            let op = accountsMissing ? "create-db-user" : rotate ? "rotate-db-password" : newPassword ? "reset-db-password" : "grant-database"
            out.steps.append(Step(t.code, op, .files, .custom(SetDatabaseUser(
                database: row.name, user: row.user, home: home, uid: t.uid, gid: t.uid, newPassword: newPassword))))
        }
        return out
    }
}

extension ServiceSpec {
    /// The MariaDB server tenants' databases live on. A sandbox runs its own `mariadbd`
    /// (in the foreground, as it does not daemonize); production's is a unit.
    public static func mariadb(_ c: Config) -> ServiceSpec {
        let m = c.mariadb
        let sandbox = c.mode == .sandbox
        var start: [String] = []
        if sandbox {
            start = [m.serverBinary, "--no-defaults", "--datadir=" + m.dataDir,
                     "--pid-file=" + m.pidFile, "--log-error=" + c.logDir + "/mariadb.log", "--user=root",
                     "--bind-address=127.0.0.1", "--port=\(m.port)", "--skip-name-resolve"]
            if let s = m.socket { start.append("--socket=" + s) }
        }
        return ServiceSpec(name: "mariadb", kind: .mariadb, binary: m.serverBinary, start: start, foreground: true, pidFile: m.pidFile,
                           unit: sandbox ? "" : m.service, argument: sandbox ? m.dataDir : nil,
                           listens: sandbox ? ["127.0.0.1:\(m.port)"] : [], errorLog: c.logDir + "/mariadb.log",
                           readySocket: sandbox ? m.socket : nil)
    }
}

/// What the MariaDB server holds of desa's: its databases, accounts and grants.
public struct DatabaseCatalog: Sendable, Equatable {
    public var databases: Set<String> = []
    /// `user@host` of every account.
    public var accounts: Set<String> = []
    /// `user@host db-pattern` of every database grant.
    public var grants: Set<String> = []
    public init(databases: Set<String> = [], accounts: Set<String> = [], grants: Set<String> = []) {
        self.databases = databases; self.accounts = accounts; self.grants = grants
    }
}

/// Reads the catalog; throws when the server cannot be reached.
public protocol DatabaseCatalogReading: Sendable {
    func read(_ m: MariaDBSettings) throws -> DatabaseCatalog
}

/// The server's own catalog, read as administrator: names with desa's prefix only.
public struct MariaDBCatalog: DatabaseCatalogReading {
    public init() {}

    public func read(_ m: MariaDBSettings) throws -> DatabaseCatalog {
        let c = try MariaDBAdmin.connect(m)
        let prefix = m.prefix
        var out = DatabaseCatalog()
        out.databases = Set(try c.query(SQL("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")).compactMap { $0[0] }
            .filter { $0.hasPrefix(prefix) })
        for r in try c.query(SQL("SELECT User, Host FROM mysql.user")) where (r[0] ?? "").hasPrefix(prefix) {
            out.accounts.insert("\(r[0] ?? "")@\(r[1] ?? "")")
        }
        for r in try c.query(SQL("SELECT User, Host, Db FROM mysql.db")) where (r[0] ?? "").hasPrefix(prefix) {
            out.grants.insert("\(r[0] ?? "")@\(r[1] ?? "") \(r[2] ?? "")")
        }
        return out
    }
}

/// How desa signs in to MariaDB as administrator.
public enum MariaDBAdmin {
    public static func connect(_ m: MariaDBSettings, database: String? = nil) throws -> MariaDBConnection {
        if let path = m.adminCredentials {
            let (user, password) = try credentials(path)
            return try MariaDBConnection(address: m.address, user: user, password: password, database: database)
        }
        guard case .socket = m.address else {
            throw DesaError(.config, "mariadb.admin_credentials is needed to sign in over TCP (unix-socket authentication needs mariadb.socket)")
        }
        return try MariaDBConnection(address: m.address, user: m.adminUser, password: nil, database: database)
    }

    /// `user` and `password` from `[client]` of an option file that only root may read.
    static func credentials(_ path: String) throws -> (String, String) {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw DesaError(.config, "mariadb.admin_credentials \(path) is not a readable file")
        }
        guard st.st_mode & 0o077 == 0, st.st_uid == geteuid() else {
            throw DesaError(.config, "mariadb.admin_credentials \(path) must be mode 0600 and owned by the user desa runs as")
        }
        let ini = OptionFile(AtomicFiles.read(path) ?? "")
        guard let user = ini.value("client", "user"), let password = ini.value("client", "password") else {
            throw DesaError(.config, "mariadb.admin_credentials \(path) needs user= and password= under [client]")
        }
        return (user, password)
    }

    /// The arguments `mariadb-dump` and `mariadb` need to sign in the same way.
    static func clientArguments(_ m: MariaDBSettings) -> [String] {
        var args = m.adminCredentials.map { ["--defaults-file=" + $0] } ?? ["--no-defaults", "--user=" + m.adminUser]
        switch m.address {
        case .socket(let s): args.append("--socket=" + s)
        case .tcp(let h, let p): args += ["--protocol=TCP", "--host=" + h, "--port=\(p)"]
        }
        return args
    }
}

/// MySQL's option-file form (`[group]`, `key=value`), as far as desa reads and writes it.
public struct OptionFile: Sendable {
    public var groups: [String: [String: String]] = [:]

    public init(_ text: String) {
        var group = ""
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") { group = String(line.dropFirst().dropLast()); continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            groups[group, default: [:]][line[..<eq].trimmingCharacters(in: .whitespaces)] = value
        }
    }

    public func value(_ group: String, _ key: String) -> String? { groups[group]?[key] }
}

/// A tenant's credentials file: what its PHP and the `mariadb` client read.
public struct DatabaseCredentials: Sendable, Equatable {
    public var user: String
    public var password: String
    public var database: String
    public var address: MariaDBAddress

    public var text: String {
        var lines = [
            "# The MariaDB account of this site, written by desa. `desactl db rotate-password` replaces it.",
            "[client]", "user=\(user)", "password=\(password)",
        ]
        switch address {
        case .socket(let s): lines.append("socket=\(s)")
        case .tcp(let h, let p): lines += ["host=\(h)", "port=\(p)"]
        }
        lines += ["", "[mysql]", "database=\(database)", ""]
        return lines.joined(separator: "\n")
    }

    public init(user: String, password: String, database: String, address: MariaDBAddress) {
        self.user = user; self.password = password; self.database = database; self.address = address
    }

    public init?(text: String) {
        let f = OptionFile(text)
        guard let u = f.value("client", "user"), let p = f.value("client", "password"), let d = f.value("mysql", "database") else { return nil }
        let address: MariaDBAddress
        if let s = f.value("client", "socket") { address = .socket(s) }
        else { address = .tcp(host: f.value("client", "host") ?? "127.0.0.1", port: Int(f.value("client", "port") ?? "") ?? 3306) }
        self.init(user: u, password: p, database: d, address: address)
    }

    /// A new password: 32 letters and digits from the system's CSPRNG (getrandom),
    /// about 190 bits; nothing in it needs quoting anywhere.
    public static func newPassword() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var rng = SystemRandomNumberGenerator()
        return String((0..<32).map { _ in alphabet[Int(rng.next(upperBound: UInt32(alphabet.count)))] })
    }

    /// Reads a tenant's credentials file without following a link.
    public static func read(home: String) -> DatabaseCredentials? {
        guard let dir = try? DirHandle.openHome(home),
              let text = dir.readFile(DatabasesCapability.credentialsFile) else { return nil }
        return DatabaseCredentials(text: text)
    }
}

/// `CREATE DATABASE IF NOT EXISTS`, in utf8mb4.
struct CreateDatabase: CustomEffect {
    var name: String
    var subject: String { name }

    func run(_ context: ApplyContext) throws {
        let c = try MariaDBAdmin.connect(context.config.mariadb)
        try c.execute(SQL("CREATE DATABASE IF NOT EXISTS \(try SQL.identifier(name)) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        FaultInjection.point("after-create-database")
    }
}

/// Makes the tenant's accounts, grants them its database (and nothing else), and with
/// `newPassword` gives them a new password: staged in the home first, set on the
/// server, then renamed over `.my.cnf`. Ends by signing in as the tenant with the file.
struct SetDatabaseUser: CustomEffect {
    var database: String
    var user: String
    var home: String
    var uid: Int
    var gid: Int
    var newPassword: Bool
    var subject: String { newPassword ? "\(user) on \(database) (new password)" : "\(user) on \(database)" }

    func run(_ context: ApplyContext) throws {
        let m = context.config.mariadb
        let c = try MariaDBAdmin.connect(m)
        let grantDB = try SQL.grantDatabase(database)
        let dir = try DirHandle.openHome(home)
        if newPassword {
            let password = DatabaseCredentials.newPassword()
            let file = DatabaseCredentials(user: user, password: password, database: database, address: m.address)
            let staged = try dir.stageFile(DatabasesCapability.credentialsFile, content: file.text, mode: 0o600, uid: uid, gid: gid,
                                           staged: DatabasesCapability.stagedFile)
            for host in DatabasesCapability.hosts {
                let account = SQL.account(user, host)
                try c.execute(
                    SQL("CREATE USER IF NOT EXISTS \(account) IDENTIFIED BY \(SQL.literal(password))", what: "creating the account \(account)"),
                    SQL("ALTER USER \(account) IDENTIFIED BY \(SQL.literal(password))", what: "setting the password of \(account)"))
            }
            try grant(c, grantDB)
            try dir.commit(staged, as: DatabasesCapability.credentialsFile)
        } else {
            try grant(c, grantDB)
        }
        // The file must open the database: sign in as the tenant, as its PHP would.
        guard let creds = DatabaseCredentials.read(home: home) else {
            throw DesaError.system("\(home)/\(DatabasesCapability.credentialsFile) is missing or unreadable")
        }
        let tenant = try MariaDBConnection(address: m.address, user: creds.user, password: creds.password, database: database)
        _ = try tenant.scalar(SQL("SELECT 1"))
    }

    func grant(_ c: MariaDBConnection, _ grantDB: String) throws {
        for host in DatabasesCapability.hosts {
            try c.execute(SQL("GRANT ALL PRIVILEGES ON \(grantDB).* TO \(SQL.account(user, host))"))
        }
    }
}

/// Dumps a database into the archive (`mariadb-dump --single-transaction`, gzipped,
/// 0600), then drops it and its accounts; with `credentialsIn` (a tenant that stays),
/// removes the credentials file from its home. Nothing is dropped unless the dump worked.
struct DropDatabase: CustomEffect {
    var name: String
    var user: String
    var dumpTo: String
    var credentialsIn: String?
    var subject: String { "\(name) -> \(dumpTo).gz" }

    func run(_ context: ApplyContext) throws {
        let m = context.config.mariadb
        let c = try MariaDBAdmin.connect(m)
        let exists = try c.scalar(SQL("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = \(SQL.literal(name))")) == "1"
        if exists {
            try MariaDBDump.dump(name, to: dumpTo, settings: m, runner: context.runner)
            try c.execute(SQL("DROP DATABASE IF EXISTS \(try SQL.identifier(name))"))
        }
        for host in DatabasesCapability.hosts {
            try c.execute(SQL("DROP USER IF EXISTS \(SQL.account(user, host))"))
        }
        if let home = credentialsIn {
            if let dir = try? DirHandle.openHome(home) {
                dir.unlink(DatabasesCapability.credentialsFile)
                dir.unlink(DatabasesCapability.stagedFile)
            }
        }
    }
}

/// `mariadb-dump --single-transaction` of one database into a file, 0600: what `db delete`
/// keeps (gzipped) and what each tenant's backup holds. A dump is good only when the
/// program exited 0 and its last line is the "Dump completed" trailer.
public enum MariaDBDump {
    /// Writes `path` (and with `gzip`, `path + ".gz"` in its place); a failed dump leaves no file behind.
    public static func dump(_ database: String, to path: String, settings m: MariaDBSettings, runner: ProcessRunning, gzip: Bool = true) throws {
        guard DatabaseNames.isName(database, allowEmpty: false) else {
            throw DesaError.invalid("\(Quote.show(database)) is not a database desa names")
        }
        let old = umask(0o077)
        defer { umask(old) }
        unlink(path); unlink(path + ".gz")
        let r = try runner.run([m.dumpBinary] + MariaDBAdmin.clientArguments(m) + [
            "--single-transaction", "--routines", "--events", "--triggers", "--hex-blob", "--result-file=" + path, "--databases", database,
        ])
        guard r.ok else {
            unlink(path)
            throw DesaError.system("mariadb-dump of \(database) failed: \(r.message)")
        }
        guard completed(path) else {
            unlink(path)
            throw DesaError.system("mariadb-dump of \(database) exited 0 but its dump has no \"Dump completed\" trailer: it is incomplete")
        }
        chmod(path, 0o600)
        guard gzip else { return }
        let z = try runner.run(["/bin/gzip", "-n", path])
        guard z.ok else {
            unlink(path); unlink(path + ".gz")
            throw DesaError.system("gzip of the dump \(path) failed: \(z.message)")
        }
        chmod(path + ".gz", 0o600)
    }

    /// Whether the dump at `path` ends with mariadb-dump's "-- Dump completed" line.
    /// Replaces `database` with a dump made by `dump` (it creates the database again): the
    /// database is dropped, then the dump loaded by the client as the administrator. The
    /// tenant's grants name the database and outlive it.
    public static func load(_ database: String, from path: String, settings m: MariaDBSettings) throws {
        guard completed(path) else { throw DesaError.invalid("the dump \(path) has no \"Dump completed\" trailer") }
        let conn = try MariaDBAdmin.connect(m)
        try conn.execute(SQL("DROP DATABASE IF EXISTS \(try SQL.identifier(database))"))
        var o = Spawn.Options()
        o.stdin = path
        let r = try SystemProcessRunner().capture([m.clientBinary] + MariaDBAdmin.clientArguments(m) + ["--batch"], o)
        guard r.ok else { throw DesaError.system("loading the dump into \(database) failed: \(Restic.trim(r.message))") }
    }

    public static func completed(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        let end = (try? h.seekToEnd()) ?? 0
        try? h.seek(toOffset: end > 256 ? end - 256 : 0)
        let tail = String(decoding: (try? h.readToEnd()) ?? Data(), as: UTF8.self)
        return tail.split(whereSeparator: \.isNewline).last?.hasPrefix("-- Dump completed") == true
    }
}
