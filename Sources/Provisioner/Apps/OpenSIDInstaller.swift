import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// What `app install opensid` did.
public struct AppInstallReport: OperationReport {
    public var slug: String
    public var url: String
    public var adminUser: String
    /// Printed once; never logged (not in `summary`, the audit row's detail).
    public var adminPassword: String?
    public var release: String
    public var tables: Int
    public var seconds: Double
    public var notes: [String]

    public var summary: String { "OpenSID from \(release), \(tables) tables; admin password set" }
    public var exitStatus: Int32 { ExitStatus.ok }

    public var json: JSON {
        .object([("slug", .string(slug)), ("url", .string(url)), ("admin_user", .string(adminUser)),
                 ("admin_password", .str(adminPassword)), ("tables", .int(tables)),
                 ("seconds", .double(seconds)), ("notes", .array(notes.map { .string($0) }))])
    }

    public var lines: [String] {
        ["OpenSID is installed for \(slug) (\(tables) tables, \(String(format: "%.1f", seconds)) s).",
         "Log in at \(url) as \(adminUser)" + (adminPassword.map { " with the password \($0)\n(shown once: desa keeps no copy; the village should change it)" } ?? " with the given password.")]
            + notes.map { "NOTE " + $0 }
    }
}

/// `app install opensid`: an operation (one install per tenant at a time, its own lock;
/// its audit row and journal entries), whose work is `OpenSIDInstaller`'s.
public struct InstallOpenSID: Operation {
    public var key: String
    public var tarball: String?
    public var version: String?
    public var adminPassword: String?
    /// The tenant's code, resolved when the operation is made.
    public let code: String
    let lockDir: String

    public init(engine: Engine, key: String, tarball: String?, version: String?, adminPassword: String?) throws {
        self.key = key; self.tarball = tarball; self.version = version; self.adminPassword = adminPassword
        code = try engine.show(key).tenant.code
        lockDir = engine.config.stateDir + "/apps"
    }

    public var name: String { "app install" }
    public var target: String { code }
    public var dryRun: Bool { false }
    public var lock: OperationLock { .file(lockDir + "/\(code.filter(\.isNumber)).lock", timeout: 0) }

    public func run(_ context: OperationContext) throws -> AppInstallReport {
        try context.engine.requireDatabases()
        return try OpenSIDInstaller(engine: context.engine, tarball: tarball, version: version, adminPassword: adminPassword).install(code, context)
    }
}

/// Installs the real OpenSID release into a tenant's web root without its web installer:
///
/// 1. the tenant gets the `opensid` template and a database (if it had none);
/// 2. the release, stored once and read-only (`Releases`), is linked into the web root
///    (`SharedLayout`) with its front controller held back as `.desa-index.php` (nginx runs
///    only `index.php` there and denies dotfiles), so nothing of it is public yet;
/// 3. `desa/config/database.php` (reading the tenant's `.my.cnf`, so `db rotate-password`
///    needs nothing else), `desa/config/config.php` (trusted hosts) and `desa/app_key` are
///    written, so OpenSID's installer is never offered (it answers 404 once `desa/` exists);
/// 4. OpenSID's own first run fills the database (its Seeder runs when `desa/` exists and
///    the database is empty): one request through PHP's built-in server, run as the tenant
///    on loopback;
/// 5. the admin's password is replaced (OpenSID's `install/user` step stays open while it
///    is the default `sid304`), then `index.php` is put in place: the site goes public
///    complete.
public struct OpenSIDInstaller {
    public var engine: Engine
    public var tarball: String?
    public var version: String?
    public var adminPassword: String?

    public init(engine: Engine, tarball: String?, version: String?, adminPassword: String?) {
        self.engine = engine; self.tarball = tarball; self.version = version; self.adminPassword = adminPassword
    }

    var config: Config { engine.config }
    var runner: ProcessRunning { engine.runner }

    static let heldBack = ".desa-index.php"

    /// The release to install: the tarball's (stored now if it was not), the version asked
    /// for, or the newest stored.
    func resolveRelease(_ notes: inout [String]) throws -> AppRelease {
        if let tarball {
            let (r, _, n) = try Releases.add(engine, tarball: tarball)
            notes += n
            return r
        }
        if let version { return try Releases.find(engine, app: "opensid", version: version) }
        guard let newest = try Releases.list(engine).first(where: { $0.0.app == "opensid" })?.0 else {
            throw DesaError(.notFound, "no OpenSID release is stored: give --from TARBALL, or add one with desactl app release add opensid TARBALL")
        }
        return newest
    }

    public func install(_ key: String, _ context: OperationContext) throws -> AppInstallReport {
        let started = engine.time.now()
        if let tarball, !FileManager.default.isReadableFile(atPath: tarball) {
            throw DesaError.invalid("cannot read the OpenSID release \(tarball)")
        }
        var notes: [String] = []
        // 1. Template and database.
        var view = try engine.show(key)
        if view.tenant.template != "opensid" {
            try engine.check(try engine.set(view.tenant.slug, options: TenantOptions(template: "opensid")), "setting the opensid template")
        }
        if try engine.databaseRecord(view.tenant.code)?.desired != .present {
            try engine.check(try engine.createDatabase(view.tenant.slug), "creating its database")
        }
        view = try engine.show(key)
        let t = view.tenant, t0 = t
        guard t.status == .active else { throw DesaError(.conflict, "tenant \(t.slug) is \(t.status.rawValue), not active") }
        guard let user = try engine.users.tenants(prefix: config.userPrefix).first(where: { $0.name == t.userName(prefix: config.userPrefix) }) else {
            throw DesaError.system("tenant \(t.slug) has no user")
        }
        let home = t.home(config), publicDir = home + "/public"
        let homeDir = try DirHandle.openHome(home)
        let pub = try homeDir.openDir("public")
        // Only the starter page may be there: never unpack over a village's own site.
        let starter = try engine.renderer().starterPage(t0, aliases: view.aliases)
        let present = try pub.entries().filter { $0 != "index.html" || pub.readFile("index.html", limit: 1 << 20) != starter }
        guard present.isEmpty else {
            throw DesaError(.conflict, "\(publicDir) is not empty (\(present.prefix(3).joined(separator: ", "))\(present.count > 3 ? ", ..." : "")); OpenSID goes only into an empty web root")
        }
        guard let creds = DatabaseCredentials.read(home: home) else { throw DesaError.system("\(home)/.my.cnf is missing; desactl apply writes it") }

        let dbName = try engine.databaseRecord(t.code)?.name ?? ""
        let emptyBefore = try MariaDBAdmin.connect(config.mariadb).scalar(
            SQL("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = " + SQL.literal(dbName))) == "0"
        let release: AppRelease, password: String, tables: Int
        do {
            // 2. The release, stored once (added now if a tarball was given), linked into the
            // web root with the front controller held back, so nothing of it is public yet.
            release = try resolveRelease(&notes)
            let releasePath = Releases.path(config, release)
            let www0 = Int(try Users.gid(ofGroup: config.webGroup))
            let asTenant = ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "--reset-env", "--"]
            try SharedLayout.point(pub, release: releasePath, uid: user.uid, www: www0, frontController: Self.heldBack)
            pub.unlink("index.html")

            // 3. desa/: configuration, the key, and what OpenSID's installer would check.
            let www = www0
            let desa = try pub.ensureDir("desa", uid: user.uid, gid: www, mode: 0o2755)
            let cfg = try desa.ensureDir("config", uid: user.uid, gid: www, mode: 0o2755)
            let hosts = [t.primaryDomain(config)] + view.aliases
            try cfg.writeFile("database.php", content: databasePHP(home: home, port: config.mariadb.port), mode: 0o600, uid: user.uid, gid: user.gid)
            try cfg.writeFile("config.php", content: configPHP(hosts: hosts), mode: 0o600, uid: user.uid, gid: user.gid)
            var key = [UInt8](repeating: 0, count: 32)
            var rng = SystemRandomNumberGenerator()
            for i in key.indices { key[i] = UInt8.random(in: 0...255, using: &rng) }
            try desa.writeFile("app_key", content: "base64:" + Data(key).base64EncodedString(), mode: 0o600, uid: user.uid, gid: user.gid)

            // 4. OpenSID's first run, as the tenant, on loopback.
            tables = try seed(t, publicDir: publicDir, asTenant: asTenant, creds: creds)

            // 5. The admin's password, then the front controller.
            password = adminPassword ?? Self.newAdminPassword()
            try setAdminPassword(password, homeDir: homeDir, user: user, asTenant: asTenant, home: home)
            try pub.commit(Self.heldBack, as: "index.php")
        } catch {
            // Nothing half-made is left: the web root as it was, the database empty again.
            for name in (try? pub.entries()) ?? [] { try? pub.removeTree(name) }
            try? pub.writeFile("index.html", content: starter, mode: 0o640, uid: user.uid, gid: Int(try Users.gid(ofGroup: config.webGroup)))
            if emptyBefore, let conn = try? MariaDBAdmin.connect(config.mariadb), let q = try? SQL.identifier(dbName) {
                try? conn.execute(SQL("DROP DATABASE IF EXISTS \(q)"))
                try? conn.execute(SQL("CREATE DATABASE IF NOT EXISTS \(q) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            }
            throw error
        }
        try engine.store.queue.write { db in
            try TenantApp(code: t.code, app: "opensid", release: release.version, state: .ok, since: engine.time.now()).save(db)
        }
        // Success only once the site answers through the web server.
        if let why = AppGate.answers(engine, t, paths: ["/", "/siteman"], within: 30) {
            throw DesaError(.checkFailed, "OpenSID \(release.version) is installed for \(t.slug), but the site does not answer: \(why)")
        }
        let scheme = config.tls.enabled ? "https" : "http"
        context.note("OpenSID installed for tenant \(t.slug) (\(t.code)): \(tables) tables", tenant: t, priority: .notice)
        return AppInstallReport(slug: t.slug, url: "\(scheme)://\(t.primaryDomain(config))/siteman", adminUser: "admin",
                                adminPassword: adminPassword == nil ? password : nil, release: release.version, tables: tables,
                                seconds: engine.time.now().timeIntervalSince(started), notes: notes)
    }

    /// OpenSID's database settings, reading the tenant's credentials file at each request:
    /// a rotated password takes effect with nothing else to change. TCP on loopback, as
    /// both of OpenSID's database layers (CodeIgniter and Eloquent) can reach it.
    func databasePHP(home: String, port: Int) -> String {
        """
        <?php
        // Written by desa (desactl app install): the account comes from the site's .my.cnf,
        // which desactl db rotate-password replaces.
        // OpenSID keeps an encrypted copy of the password on the next line after each of its
        // migrations (updateConfigFile); the .my.cnf line further down wins.
        $db['default']['password'] = '';
        $desa_cnf = parse_ini_file('\(home)/.my.cnf', true, INI_SCANNER_RAW);
        $db['default']['hostname'] = '127.0.0.1';
        $db['default']['port']     = \(port);
        $db['default']['username'] = $desa_cnf['client']['user'];
        $db['default']['password'] = $desa_cnf['client']['password'];
        $db['default']['database'] = $desa_cnf['mysql']['database'];
        $db['default']['dbcollat'] = 'utf8_general_ci';
        $db['default']['stricton'] = true;

        """
    }

    func configPHP(hosts: [String]) -> String {
        """
        <?php
        // Written by desa (desactl app install).
        $config['user_admin'] = 0;
        // As URLs: OpenSID compares each one's parse_url() host with the request's.
        $config['trusted_hosts'] = [\(hosts.flatMap { ["'https://\($0)'", "'http://\($0)'"] }.joined(separator: ", "))];

        """
    }

    /// One request to `/` through PHP's built-in server, as the tenant: OpenSID creates its
    /// folders and fills the empty database. Returns the number of tables.
    func seed(_ t: Tenant, publicDir: String, asTenant: [String], creds: DatabaseCredentials) throws -> Int {
        let (server, probe) = try AppGate.phpServer(engine, t, asTenant: asTenant, router: Self.heldBack, log: "/dev/null")
        defer { server.stop() }
        let deadline = engine.time.deadline(10)
        var response: HTTPProbe.Response?
        var lastError = ""
        while response == nil && engine.time.now() < deadline {
            do { response = try probe.get(host: t.primaryDomain(config), path: "/") } catch {
                lastError = Applier.message(error)
                engine.time.sleep(0.1)
            }
        }
        guard let r = response else { throw DesaError.system("OpenSID's first run did not answer: \(lastError)") }
        let c = try MariaDBConnection(address: config.mariadb.address, user: creds.user, password: creds.password, database: creds.database)
        let tables = Int(try c.scalar(SQL("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")) ?? "0") ?? 0
        guard r.status == 200, tables > 100 else {
            throw DesaError.system("OpenSID's first run answered HTTP \(r.status) and left \(tables) tables; see \(publicDir)/storage/logs: \(r.body.prefix(300))")
        }
        return tables
    }

    /// Replaces the default admin password through a PHP script the tenant runs (bcrypt,
    /// as OpenSID hashes it): the password is in a 0600 file of the tenant's for a moment,
    /// never on a command line.
    func setAdminPassword(_ password: String, homeDir: DirHandle, user: SystemUser, asTenant: [String], home: String) throws {
        guard Self.acceptable(password) else {
            throw DesaError.invalid("OpenSID wants an admin password of 8 to 20 characters with a digit, a lowercase and an uppercase letter and a symbol (otherwise it forces a change at the first login)")
        }
        let tmp = try homeDir.openDir("tmp")
        let secret = ".desa-admin-password", script = ".desa-admin-password.php"
        try tmp.writeFile(secret, content: password, mode: 0o600, uid: user.uid, gid: user.gid)
        defer { tmp.unlink(secret); tmp.unlink(script) }
        try tmp.writeFile(script, content: """
        <?php
        $c = parse_ini_file('\(home)/.my.cnf', true, INI_SCANNER_RAW);
        $pdo = new PDO('mysql:unix_socket=' . ($c['client']['socket'] ?? '') . ';host=127.0.0.1;port=\(config.mariadb.port);dbname=' . $c['mysql']['database'],
                       $c['client']['user'], $c['client']['password'], [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
        $pw = file_get_contents('\(home)/tmp/\(secret)');
        $n = $pdo->prepare("UPDATE user SET password = ? WHERE username = 'admin'");
        $n->execute([password_hash($pw, PASSWORD_BCRYPT)]);
        if ($n->rowCount() !== 1) { fwrite(STDERR, "no admin user to update\\n"); exit(1); }

        """, mode: 0o600, uid: user.uid, gid: user.gid)
        let r = try runner.run(asTenant + ["/usr/bin/php" + config.php.default, home + "/tmp/" + script])
        guard r.ok else { throw DesaError.system("setting OpenSID's admin password failed: \(r.message)") }
    }

    /// OpenSID's own rule (Siteman's `syarat_sandi`): 8 to 20 characters, with a digit, a
    /// lowercase and an uppercase letter and a symbol.
    static func acceptable(_ p: String) -> Bool {
        (8...20).contains(p.count) && !p.contains(where: \.isNewline)
            && p.contains(where: \.isNumber) && p.contains(where: \.isLowercase) && p.contains(where: \.isUppercase)
            && p.contains(where: { !$0.isLetter && !$0.isNumber && !$0.isWhitespace })
    }

    static func newAdminPassword() -> String {
        // Letters and digits without look-alikes, in groups of four for reading aloud over the
        // phone to the village; the dashes are the symbol OpenSID wants.
        let alphabet = Array("abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var rng = SystemRandomNumberGenerator()
        while true {
            let chars = (0..<16).map { _ in alphabet[Int(rng.next(upperBound: UInt32(alphabet.count)))] }
            let p = stride(from: 0, to: 16, by: 4).map { String(chars[$0..<($0 + 4)]) }.joined(separator: "-")
            if acceptable(p) { return p }
        }
    }

    static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DesaError.system("socket: \(errnoText())") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw DesaError.system("no free port on 127.0.0.1: \(errnoText())") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

extension Engine {
    /// A change that must have worked before the next step.
    func check(_ r: ChangeReport, _ what: String) throws {
        if let f = r.result?.failures.first { throw DesaError(.checkFailed, "\(what) failed: \(f.reason)") }
    }

    public func installOpenSID(_ key: String, tarball: String?, version: String? = nil, adminPassword: String?) throws -> AppInstallReport {
        try perform(try InstallOpenSID(engine: self, key: key, tarball: tarball, version: version, adminPassword: adminPassword))
    }
}
