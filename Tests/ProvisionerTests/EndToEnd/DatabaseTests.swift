import Foundation
import Testing
@testable import Provisioner

/// Tenants' MariaDB databases against a real `mariadbd` the sandbox runs itself, used by
/// each tenant's own PHP-FPM pool through real nginx.
@Suite("Databases: MariaDB per tenant, with a real mariadbd", .serialized)
struct DatabaseTests {
    /// What each tenant's PHP does with its credentials file; JSON out.
    static let probe = """
    <?php
    header('Content-Type: application/json');
    mysqli_report(MYSQLI_REPORT_OFF);
    $out = [];
    $ini = parse_ini_file(__DIR__ . '/../.my.cnf', true, INI_SCANNER_RAW);
    $c = $ini['client']; $db = $ini['mysql']['database'];
    $m = @new mysqli('localhost', $c['user'], $c['password'], $db, 0, $c['socket']);
    if ($m->connect_errno) { echo json_encode(['connect' => $m->connect_error]); exit; }
    $out['connect'] = 'ok';
    $out['create'] = $m->query('CREATE TABLE IF NOT EXISTS village (id INT PRIMARY KEY, name VARCHAR(100))') ? 'ok' : $m->error;
    $m->query("REPLACE INTO village VALUES (1, '" . $m->real_escape_string($db) . "')");
    $out['own'] = $m->query('SELECT name FROM village')->fetch_row()[0] ?? null;
    $out['other_db'] = @$m->select_db($_GET['other']) ? 'opened' : 'refused';
    $r = $m->query('SHOW DATABASES'); $dbs = []; while ($row = $r->fetch_row()) { $dbs[] = $row[0]; }
    $out['databases'] = $dbs;
    $out['other_file'] = @file_get_contents($_GET['otherfile']) === false ? 'denied' : 'read';
    echo json_encode($out);
    """

    /// Puts the probe into a tenant's web root, owned by the tenant.
    func installProbe(_ h: SandboxHarness, slug: String, uid: Int) throws {
        let path = h.dir + "/srv/\(slug)/public/db.php"
        try Self.probe.write(toFile: path, atomically: false, encoding: .utf8)
        let www = try Users.gid(ofGroup: "www-data")
        chown(path, uid_t(uid), www)
        chmod(path, 0o640)
    }

    func json(_ r: HTTPProbe.Response) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any] ?? ["raw": r.body]
    }

    func databasesByTenant(_ h: SandboxHarness) throws -> [(slug: String, code: String, uid: Int, db: String)] {
        let users = Dictionary(try h.users().map { ($0.name, $0.uid) }, uniquingKeysWith: { a, _ in a })
        return try h.tenants().map { t in
            let code = t["code"] as! String, slug = t["slug"] as! String
            let digits = code.filter(\.isNumber)
            return (slug, code, users[h.prefix + digits] ?? -1, "desa_" + digits)
        }
    }

    @Test("50 tenants with databases: each PHP pool uses its own, and can open no other database or credentials file")
    func fiftyTenantsAreIsolated() throws {
        let h = try SandboxHarness("db50", mariadb: true)
        defer { h.destroy() }
        let r = try h.desactl("tenant", "import", try h.bandungSubset(50), "--with-db")
        try #require(r.ok, "\(r.stdout) \(r.stderr)")
        let tenants = try databasesByTenant(h)
        try #require(tenants.count == 50)
        let found = try h.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'desa\\\\_%'")
        #expect(Set(found.stdout.split(separator: "\n").map(String.init)) == Set(tenants.map(\.db)))

        for (i, t) in tenants.enumerated() {
            // The credentials file: the tenant's, 0600.
            var st = stat()
            let cnf = h.dir + "/srv/\(t.slug)/.my.cnf"
            #expect(lstat(cnf, &st) == 0 && st.st_mode & 0o777 == 0o600 && Int(st.st_uid) == t.uid, "\(cnf)")
            try installProbe(h, slug: t.slug, uid: t.uid)
            let other = tenants[(i + 1) % tenants.count]
            let resp = try h.get("\(t.slug).bandungkab.go.id", "/db.php?other=\(other.db)&otherfile=\(h.dir)/srv/\(other.slug)/.my.cnf")
            let out = json(resp)
            #expect(out["connect"] as? String == "ok", "\(t.slug): \(out)")
            #expect(out["create"] as? String == "ok", "\(t.slug): \(out)")
            #expect(out["own"] as? String == t.db, "\(t.slug): \(out)")
            #expect(out["other_db"] as? String == "refused", "\(t.slug) opened \(other.db)")
            #expect((out["databases"] as? [String]).map { Set($0) } == [t.db, "information_schema"], "\(t.slug) sees \(out["databases"] ?? "")")
            #expect(out["other_file"] as? String == "denied", "\(t.slug) read \(other.slug)'s credentials")
        }
        // Another tenant's user cannot read the file even outside PHP.
        let a = tenants[0], b = tenants[1]
        let cat = try h.runner.run(["/usr/sbin/runuser", "-u", h.prefix + b.code.filter(\.isNumber), "--", "/bin/cat",
                                    h.dir + "/srv/\(a.slug)/.my.cnf"])
        #expect(!cat.ok && cat.stderr.contains("Permission denied"), "\(cat.stdout) \(cat.stderr)")
        // Grants: its own database, from localhost and 127.0.0.1, nothing else.
        let grants = try h.sql("SELECT Host, Db FROM mysql.db WHERE User = '\(a.db)' ORDER BY Host")
        #expect(grants.stdout == "127.0.0.1\t\(a.db.replacingOccurrences(of: "_", with: "\\\\_"))\nlocalhost\t\(a.db.replacingOccurrences(of: "_", with: "\\\\_"))\n", "\(grants.stdout)")
        let global = try h.sql("SELECT COUNT(*) FROM mysql.user WHERE User LIKE 'desa\\\\_%' AND (Select_priv = 'Y' OR Create_priv = 'Y' OR Super_priv = 'Y')")
        #expect(global.stdout == "0\n", "no tenant account has a global privilege")
        // Converged: a second apply changes nothing.
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"))
    }

    @Test("rotate-password: the old password stops working, PHP keeps working, no password in the journal or the state database")
    func rotatePassword() throws {
        let h = try SandboxHarness("dbrot", mariadb: true)
        defer { h.destroy() }
        let jdir = h.dir + "/journal"
        func logged(_ args: String...) throws -> ProcessResult {
            try h.runner.run([JournalTests.harness, jdir, "--", Support.desactl, "--config", h.configPath] + args)
        }
        let created = try logged("tenant", "create", "32.04.08.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi", "--with-db")
        try #require(created.ok, "\(created.stdout) \(created.stderr)")
        let t = try #require(try databasesByTenant(h).first)
        try installProbe(h, slug: t.slug, uid: t.uid)
        let home = h.dir + "/srv/\(t.slug)"
        let old = try #require(DatabaseCredentials.read(home: home))
        let m = try h.config().mariadb
        #expect(json(try h.get("cileunyi-kulon.bandungkab.go.id", "/db.php?other=mysql&otherfile=/etc/passwd"))["own"] as? String == t.db)

        let rotated = try logged("db", "rotate-password", "cileunyi-kulon")
        #expect(rotated.ok, "\(rotated.stdout) \(rotated.stderr)")
        let new = try #require(DatabaseCredentials.read(home: home))
        #expect(new.password != old.password && new.password.count == 32)
        #expect(throws: DesaError.self, "the old password still opens the database") {
            _ = try MariaDBConnection(address: m.address, user: old.user, password: old.password, database: t.db)
        }
        _ = try MariaDBConnection(address: m.address, user: new.user, password: new.password, database: t.db)
        _ = try MariaDBConnection(address: .tcp(host: "127.0.0.1", port: m.port), user: new.user, password: new.password, database: t.db)
        #expect(json(try h.get("cileunyi-kulon.bandungkab.go.id", "/db.php?other=mysql&otherfile=/etc/passwd"))["own"] as? String == t.db)
        #expect(!FileManager.default.fileExists(atPath: home + "/" + DatabasesCapability.stagedFile))

        // db show: no password unless --reveal.
        let shown = try h.desactl("db", "show", "cileunyi-kulon", "--json")
        #expect(shown.ok && !shown.stdout.contains(new.password) && !shown.stdout.contains("password"))
        let revealed = try logged("db", "show", "cileunyi-kulon", "--reveal")
        #expect(revealed.stdout.contains(new.password))

        // Neither password anywhere desa records things: the journal (every field of every
        // entry), the state database and its WAL, the logs, and the commands' output.
        let export = try h.runner.run(["/usr/bin/journalctl", "-D", jdir, "-o", "export", "--no-pager"])
        try #require(export.ok && export.stdout.contains("DESA_OP=db rotate-password"), "the journal was not written: \(export.stderr)")
        let c = try h.config()
        var haystacks = [("journal", export.stdout), ("create output", created.stdout + created.stderr),
                         ("rotate output", rotated.stdout + rotated.stderr)]
        for f in [c.databasePath, c.databasePath + "-wal"] {
            if let d = FileManager.default.contents(atPath: f) { haystacks.append((f, String(decoding: d, as: UTF8.self))) }
        }
        for log in (try? FileManager.default.subpathsOfDirectory(atPath: c.logDir)) ?? [] {
            if let d = FileManager.default.contents(atPath: c.logDir + "/" + log) { haystacks.append((log, String(decoding: d, as: UTF8.self))) }
        }
        for (name, text) in haystacks {
            #expect(!text.contains(old.password) && !text.contains(new.password), "a password is in \(name)")
        }
        let audit = try StateStore(path: c.databasePath).audit()
        #expect(audit.contains { $0.op == "db reveal" }, "revealing a password is audited")
    }

    @Test("the server stopped in the middle of db create, then started: re-running converges, no half-made database or dangling user")
    func serverDownMidCreate() throws {
        let h = try SandboxHarness("dbdown", mariadb: true)
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "create", "32.04.08.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi").ok)
        let c = try h.config()
        let marker = h.dir + "/fault-reached"
        let p = try Spawned([Support.desactl, "--config", h.configPath, "db", "create", "cileunyi-kulon"],
                            environment: ["DESA_TEST_FAULT": "after-create-database:" + marker, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        defer { p.stop() }
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: marker) && Date() < deadline { usleep(50_000) }
        try #require(FileManager.default.fileExists(atPath: marker), "the fault point was never reached")
        // The database exists now; the server goes away before the user is made.
        #expect(try h.sql("SHOW DATABASES LIKE 'desa_3204082001'").stdout == "desa_3204082001\n")
        let control = ServiceControl(config: c, runner: h.runner)
        control.stop(.mariadb(c))
        try FileManager.default.removeItem(atPath: marker)
        let status = p.wait(60)
        #expect(status == 1, "db create must fail when the server goes away (exit \(String(describing: status)))")
        let failed = try h.tenants().first
        #expect(failed?["status"] as? String == "failed")
        #expect((failed?["reason"] as? String ?? "").contains("MariaDB"), "\(failed ?? [:])")

        // While the server is down, plan says so for this tenant and changes nothing else.
        let down = try h.desactl("plan")
        #expect(down.stdout.contains("cannot be managed") && down.stdout.contains("cannot connect to MariaDB"), "\(down.stdout)")

        try control.start(.mariadb(c))
        let again = try h.desactl("apply")
        #expect(again.ok, "\(again.stdout) \(again.stderr)")
        #expect(try h.tenants().first?["status"] as? String == "active")
        let creds = try #require(DatabaseCredentials.read(home: h.dir + "/srv/cileunyi-kulon"))
        _ = try MariaDBConnection(address: c.mariadb.address, user: creds.user, password: creds.password, database: "desa_3204082001")
        #expect(try h.sql("SELECT COUNT(*) FROM mysql.user WHERE User = 'desa_3204082001'").stdout == "2\n")
        #expect(!FileManager.default.fileExists(atPath: h.dir + "/srv/cileunyi-kulon/" + DatabasesCapability.stagedFile))
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"))

        // Deleting the tenant dumps the database into the archive and drops it and its user.
        #expect(try h.desactl("tenant", "delete", "cileunyi-kulon").ok)
        #expect(try h.sql("SELECT COUNT(*) FROM mysql.user WHERE User = 'desa_3204082001'").stdout == "0\n")
        #expect(try h.sql("SHOW DATABASES LIKE 'desa_3204082001'").stdout == "")
        let dumps = try FileManager.default.contentsOfDirectory(atPath: c.archiveDir).filter { $0.hasSuffix("-database.sql.gz") }
        #expect(dumps.count == 1, "\(dumps)")
    }

    @Test("hostile names: backquotes, quotes, % and _ reach SQL quoted and escaped, and no other database is touched")
    func hostileNames() throws {
        let h = try SandboxHarness("dbhostile", mariadb: true)
        defer { h.destroy() }
        let c = try h.config()
        let admin = try MariaDBAdmin.connect(c.mariadb)
        try admin.execute(SQL("CREATE DATABASE canary"), SQL("CREATE TABLE canary.t (x INT)"), SQL("INSERT INTO canary.t VALUES (42)"),
                          SQL("CREATE DATABASE aXb"), SQL("CREATE TABLE aXb.secret (x INT)"))
        let before = try admin.query(SQL("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1"))
        let hostile = ["x`; DROP DATABASE canary; --", "a'b\"c", "100%", "a_b", "back\\slash", "`", String(repeating: "n", count: 64)]
        for name in hostile {
            try admin.execute(SQL("CREATE DATABASE \(try SQL.identifier(name))"))
            let names = try admin.query(SQL("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = \(SQL.literal(name))"))
            #expect(names.count == 1 && names[0][0] == name, "\(name) was not created as itself")
            try admin.execute(SQL("CREATE USER \(SQL.account("hostile", "localhost")) IDENTIFIED BY \(SQL.literal("p'w\\d\""))"),
                              SQL("GRANT ALL ON \(try SQL.grantDatabase(name)).* TO \(SQL.account("hostile", "localhost"))"))
            let u = try MariaDBConnection(address: c.mariadb.address, user: "hostile", password: "p'w\\d\"")
            // `a_b` must not grant `aXb`, `100%` must not grant everything.
            #expect(throws: DesaError.self, "\(name) granted aXb") { try u.execute(SQL("SELECT * FROM aXb.secret")) }
            #expect(throws: DesaError.self, "\(name) granted canary") { try u.execute(SQL("SELECT * FROM canary.t")) }
            try admin.execute(SQL("DROP USER \(SQL.account("hostile", "localhost"))"), SQL("DROP DATABASE \(try SQL.identifier(name))"))
        }
        #expect(try admin.query(SQL("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")) == before)
        #expect(try admin.scalar(SQL("SELECT x FROM canary.t")) == "42")
        // Too long or with NUL: refused before any statement is sent.
        #expect(throws: DesaError.self) { try SQL.identifier(String(repeating: "n", count: 100)) }
        #expect(throws: DesaError.self) { try SQL.identifier("a\u{0}b") }
        // Names desa makes pass one grammar; a config that would make others is refused.
        var bad = c
        bad.mariadb.prefix = "x`"
        #expect(throws: DesaError.self) { try bad.mariadb.validate(in: bad) }
        let text = (AtomicFiles.read(h.configPath) ?? "").replacingOccurrences(of: "prefix = \"desa_\"", with: "prefix = \"desa%\"")
        #expect(throws: DesaError.self) { try Config.parse(text, source: "hostile.toml") }
    }

    @Test("a tenant that swaps its .my.cnf for a link to a root-only secret: desa replaces the link, writes nothing through it, reveals nothing from it")
    func hostileCredentialsLink() throws {
        let h = try SandboxHarness("dblink", mariadb: true)
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "create", "32.04.08.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi", "--with-db").ok)
        let t = try #require(try databasesByTenant(h).first)
        let user = h.prefix + t.code.filter(\.isNumber)
        let home = h.dir + "/srv/\(t.slug)"
        // A file of this test's own, root's and 0600 like /etc/shadow (which changes whenever
        // anyone on the machine adds or removes a user, so it cannot be compared whole).
        let secret = h.dir + "-canary"
        let canary = "root:$y$canary-\(getpid()):19000:0:99999:7:::\n"
        try canary.write(toFile: secret, atomically: false, encoding: .utf8)
        chmod(secret, 0o600)
        defer { unlink(secret) }
        // The tenant, as itself, replaces its credentials file and plants the staged name too.
        for name in [".my.cnf", ".my.cnf.desa-rotating"] {
            let r = try h.runner.run(["/usr/sbin/runuser", "-u", user, "--", "/bin/ln", "-sfn", secret, home + "/" + name])
            try #require(r.ok, "\(r.message)")
        }
        let reveal = try h.desactl("db", "show", t.slug, "--reveal")
        #expect(!reveal.ok && !reveal.stdout.contains("$y$") && !reveal.stderr.contains("$y$"), "db show --reveal read through the link: \(reveal.stdout)")
        let plan = try h.desactl("plan")
        #expect(plan.stdout.contains("reset-db-password"), "\(plan.stdout)")
        let rotated = try h.desactl("db", "rotate-password", t.slug)
        #expect(rotated.ok, "\(rotated.stdout) \(rotated.stderr)")
        #expect(AtomicFiles.read(secret) == canary, "the file the link named changed")
        var st = stat()
        #expect(stat(secret, &st) == 0 && st.st_uid == 0 && st.st_mode & 0o777 == 0o600, "the file the link named changed owner or mode")
        #expect(lstat(home + "/.my.cnf", &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_mode & 0o777 == 0o600,
                "the link is still there, or the new file is not 0600")
        #expect(lstat(home + "/.my.cnf.desa-rotating", &st) != 0, "the staged name is left behind")
        let creds = try #require(DatabaseCredentials.read(home: home))
        _ = try MariaDBConnection(address: try h.config().mariadb.address, user: creds.user, password: creds.password, database: t.db)
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"))
    }
}
