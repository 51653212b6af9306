import Foundation
import Testing
@testable import Provisioner

/// Backups for real: restic 0.14 from Debian, the sandbox's own MariaDB, nginx and php-fpm
/// serving what a restore brought back, an append-only repository behind rclone.
@Suite("Backups: nightly snapshots and proven restores, with real restic", .serialized)
struct BackupTests {
    func sandbox(_ name: String, initArgs: [String] = [], settings: [String: String] = [:]) throws -> SandboxHarness {
        let h = try SandboxHarness(name, mariadb: true, start: false, initArgs: ["--with-backups"] + initArgs)
        if !settings.isEmpty { try h.set("backup", settings) }
        let s = try h.desactl("sandbox", "start")
        if !s.ok { h.destroy() }
        try #require(s.ok, "\(s.message)")
        return h
    }

    func asTenant(_ h: SandboxHarness, _ slug: String, _ argv: String...) throws -> ProcessResult {
        let u = try #require(try h.users().first { $0.home == h.dir + "/srv/" + slug })
        return try h.runner.run(["/usr/sbin/runuser", "-u", u.name, "--"] + argv)
    }

    func write(_ h: SandboxHarness, _ slug: String, _ rel: String, _ text: String) throws {
        let path = h.dir + "/srv/\(slug)/" + rel
        // Copied by the tenant itself, so the file is its own, as one its PHP made.
        try text.write(toFile: h.dir + "/text.tmp", atomically: true, encoding: .utf8)
        chmod(h.dir + "/text.tmp", 0o644)
        let cp = try asTenant(h, slug, "/bin/cp", h.dir + "/text.tmp", path)
        try #require(cp.ok, "\(cp.message)")
    }

    func json(_ r: ProcessResult) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }

    func db(_ slug: String, _ h: SandboxHarness) throws -> String {
        let t = try #require(try h.tenants().first { $0["slug"] as? String == slug })
        return "desa_" + (t["code"] as! String).filter(\.isNumber)
    }

    /// The state of `check` for `slug` in a sweep at `now`.
    func health(_ h: SandboxHarness, _ slug: String, now: Date = Date()) throws -> String? {
        let r = try h.desactl(now: now, "health", "--now", "--json")
        let doc = try #require(try json(r) as? [String: Any], "\(r.stdout) \(r.stderr)")
        let tenants = doc["tenants"] as? [[String: Any]] ?? []
        let t = tenants.first { $0["slug"] as? String == slug }
        let checks = t?["checks"] as? [[String: Any]] ?? []
        return checks.first { $0["check"] as? String == "backup" }?["state"] as? String
    }

    @Test("a run backs up every village and names the one whose dump failed; restores bring files and database back, served by nginx")
    func runAndRestore() throws {
        let h = try sandbox("bkrun")
        defer { h.destroy() }
        let initR = try h.desactl("backup", "init")
        try #require(initR.ok, "\(initR.message)")
        #expect(initR.stdout.contains("KEEP A COPY"))
        #expect(initR.stdout.contains("added a light key"), "\(initR.stdout)")
        var st = stat()
        #expect(lstat(h.dir + "/state/backup-password", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try h.desactl("backup", "init").stdout.contains("nothing to do"), "init twice changes nothing")
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(4), "--with-db").ok)
        let slugs = try h.tenants().map { $0["slug"] as! String }.sorted()
        let a = slugs[0], b = slugs[1]
        let dbA = try db(a, h), dbB = try db(b, h)
        #expect(try health(h, a) == "ok", "a new village is not late yet")

        try write(h, a, "public/marker.txt", "version one\n")
        try #require(try h.sql("CREATE TABLE \(dbA).t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO \(dbA).t VALUES (1, 'one')").ok)
        let run = try h.desactl("backup", "run", "--all", "--json")
        try #require(run.ok, "\(run.stdout) \(run.stderr)")
        let list = try #require(try json(try h.desactl("backup", "list", "--json")) as? [[String: Any]])
        #expect(list.count == 4 && list.allSatisfy { $0["last_outcome"] as? String == "ok" && $0["last_snapshot"] is String }, "\(list)")
        #expect(try health(h, a) == "ok")

        // The village changes; --to brings the snapshot aside and changes nothing live.
        try write(h, a, "public/marker.txt", "version two\n")
        try write(h, a, "public/added.txt", "added later\n")
        try write(h, a, "tmp/scratch", "temporary\n")
        try #require(try h.sql("UPDATE \(dbA).t SET v = 'two'; INSERT INTO \(dbA).t VALUES (2, 'later')").ok)
        let aside = h.dir + "/aside"
        let to = try h.desactl("backup", "restore", a, "--to", aside)
        try #require(to.ok, "\(to.message)")
        #expect(Support.read(aside + "/files/public/marker.txt") == "version one\n")
        let dump = Support.read(aside + "/database.sql")
        #expect(dump.contains("'one'") && dump.contains("-- Dump completed"))
        #expect(Support.read(aside + "/tenant.json").contains("\"slug\" : \"\(a)\""))
        #expect(try h.get("\(a).bandungkab.go.id", "/marker.txt").body == "version two\n", "--to changed the live site")

        // In place: the site serves the restored state, its database too; a safety snapshot first.
        let home = h.dir + "/srv/" + a
        var before = stat()
        lstat(home, &before)
        let restored = try h.desactl("backup", "restore", a)
        try #require(restored.ok, "\(restored.stdout) \(restored.stderr)")
        #expect(try h.get("\(a).bandungkab.go.id", "/marker.txt").body == "version one\n")
        #expect(try h.get("\(a).bandungkab.go.id", "/added.txt").status == 404)
        #expect(try h.sql("SELECT id, v FROM \(dbA).t ORDER BY id").stdout == "1\tone\n")
        #expect(FileManager.default.fileExists(atPath: home + "/tmp/scratch"), "tmp/ is left as it was")
        var after = stat()
        lstat(home, &after)
        #expect(after.st_mode == before.st_mode && after.st_uid == before.st_uid && after.st_gid == before.st_gid)
        let snaps = try #require(try json(try h.desactl("backup", "snapshots", a, "--json")) as? [[String: Any]])
        #expect(snaps.filter { $0["safety"] as? Bool == true }.count == 1, "\(snaps)")
        // The safety snapshot holds what was there: restoring it undoes the restore.
        let safety = try #require(snaps.first { $0["safety"] as? Bool == true }?["short_id"] as? String)
        #expect(try h.desactl("backup", "restore", a, "--snapshot", safety).ok)
        #expect(try h.get("\(a).bandungkab.go.id", "/marker.txt").body == "version two\n")
        #expect(try h.sql("SELECT COUNT(*) FROM \(dbA).t").stdout == "2\n")
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"), "a restore leaves the server converged")

        // One village's dump fails: the others are backed up, it is named and recorded.
        try #require(try h.sql("DROP DATABASE \(dbB)").ok)
        let failed = try h.desactl("backup", "run", "--all")
        #expect(failed.status == 1)
        #expect(failed.stdout.contains("FAILED \(b): mariadb-dump of \(dbB) failed"), "\(failed.stdout)")
        #expect(failed.stdout.contains("3 tenants backed up") && failed.stdout.contains("1 FAILED: \(b)"), "\(failed.stdout)")
        let rows = try #require(try json(try h.desactl("backup", "list", "--json")) as? [[String: Any]])
        let rowB = try #require(rows.first { $0["slug"] as? String == b })
        #expect(rowB["last_outcome"] as? String == "failed" && (rowB["last_error"] as? String ?? "").contains("Unknown database"))
        #expect(rowB["last_snapshot"] is String, "the last good snapshot stands")
        #expect(try health(h, b) == "down")
        #expect(try health(h, a) == "ok")
        // Late backups: degraded past 26 hours, down past 50.
        #expect(try health(h, a, now: Date().addingTimeInterval(27 * 3600)) == "degraded")
        #expect(try health(h, a, now: Date().addingTimeInterval(51 * 3600)) == "down")
        #expect(try h.desactl("tenant", "show", b).stdout.contains("last attempt FAILED"))

        // Two runs never overlap: the second says so and does nothing.
        do {
            let lock = try StateLock(path: h.dir + "/state/backup/run.lock", timeout: 1)
            let second = try h.desactl("backup", "run", "--all")
            #expect(!second.ok && second.stderr.contains("another backup run is going"), "\(second.stderr)")
            withExtendedLifetime(lock) {}
        }

        // verify: the repository read back, and restore drills of every village with a snapshot.
        let verify = try h.desactl("backup", "verify", "--tenants", "4")
        #expect(verify.ok, "\(verify.stdout) \(verify.stderr)")
        #expect(verify.stdout.contains("4 restore drills passed"), "\(verify.stdout)")
        // forget: one snapshot a day kept per village (safety snapshots apart).
        let forget = try h.desactl("backup", "forget")
        #expect(forget.ok && forget.stdout.contains("removed"), "\(forget.stdout) \(forget.stderr)")
        #expect(try h.desactl("backup", "restore", a, "--to", h.dir + "/after-forget").ok, "the latest snapshot survives forget")
    }

    @Test("a hostile village: links it plants are kept as links, and a restore writes nothing where the tenant could not")
    func hostileTenant() throws {
        let h = try sandbox("bkhost")
        defer { h.destroy() }
        try #require(try h.desactl("backup", "init").ok)
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(2), "--with-db").ok)
        let slugs = try h.tenants().map { $0["slug"] as! String }.sorted()
        let a = slugs[0], b = slugs[1]
        // A root-only canary outside every home, and the other village's credentials.
        let canary = h.dir + "/canary"
        try FileManager.default.createDirectory(atPath: canary, withIntermediateDirectories: true)
        try "root's secret\n".write(toFile: canary + "/secret", atomically: true, encoding: .utf8)
        chmod(canary + "/secret", 0o644)
        let otherCnf = h.dir + "/srv/\(b)/.my.cnf"
        let otherBefore = Support.read(otherCnf)
        try write(h, a, "public/data.txt", "the village's data\n")
        #expect(try asTenant(h, a, "/bin/ln", "-s", otherCnf, h.dir + "/srv/\(a)/public/other.cnf").ok)
        #expect(try asTenant(h, a, "/bin/ln", "-s", "/etc/shadow", h.dir + "/srv/\(a)/public/shadow").ok)
        try #require(try h.desactl("backup", "run", a).ok)
        let aside = h.dir + "/aside"
        try #require(try h.desactl("backup", "restore", a, "--to", aside).ok)
        for link in ["other.cnf", "shadow"] {
            var st = stat()
            #expect(lstat(aside + "/files/public/" + link, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK, "\(link) was followed")
        }
        // Before the restore the tenant turns its file into a link to root's canary, and its
        // own .my.cnf-less public into a maze: a root copy would write through them.
        let pub = h.dir + "/srv/\(a)/public"
        #expect(try asTenant(h, a, "/bin/rm", pub + "/data.txt").ok)
        #expect(try asTenant(h, a, "/bin/ln", "-s", canary + "/secret", pub + "/data.txt").ok)
        #expect(try asTenant(h, a, "/bin/ln", "-s", h.dir + "/srv/\(b)/public", pub + "/sub").ok)
        let r = try h.desactl("backup", "restore", a)
        #expect(r.ok, "\(r.stdout) \(r.stderr)")
        #expect(Support.read(canary + "/secret") == "root's secret\n", "the restore wrote through the tenant's link")
        #expect(Support.read(otherCnf) == otherBefore)
        var st = stat()
        #expect(lstat(pub + "/data.txt", &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && Support.read(pub + "/data.txt") == "the village's data\n")
        #expect(lstat(pub + "/sub", &st) != 0, "what the snapshot does not hold is removed")
        #expect(try h.get("\(a).bandungkab.go.id", "/data.txt").body == "the village's data\n")
        // Nothing of the restore is left in the staging area.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: h.dir + "/state/backup/restore")) == [])
        #expect((try? FileManager.default.contentsOfDirectory(atPath: h.dir + "/state/backup/tenants")) == [])
    }

    @Test("with quotas: a snapshot larger than the village's quota is refused before anything changes")
    func restoreRespectsQuota() throws {
        let h = try sandbox("bkquota", initArgs: ["--quota-backend", "image", "--quota", "40MiB"])
        defer { h.destroy() }
        try #require(try h.desactl("backup", "init").ok)
        try #require(try h.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi").ok)
        let a = "cileunyi-kulon", pub = h.dir + "/srv/\(a)/public"
        let big = try asTenant(h, a, "/usr/bin/dd", "if=/dev/urandom", "of=" + pub + "/big.bin", "bs=1M", "count=24", "status=none")
        try #require(big.ok, "\(big.message)")
        try #require(try h.desactl("backup", "run", a).ok)
        #expect(try asTenant(h, a, "/bin/rm", pub + "/big.bin").ok)
        try write(h, a, "public/now.txt", "what is there now\n")
        let set = try h.desactl("quota", "set", a, "16MiB")
        try #require(set.ok, "\(set.message)")
        let r = try h.desactl("backup", "restore", a)
        #expect(r.status != 0 && r.stderr.contains("more than \(a)'s quota"), "\(r.stdout) \(r.stderr)")
        #expect(Support.read(pub + "/now.txt") == "what is there now\n" && !FileManager.default.fileExists(atPath: pub + "/big.bin"))
        let snaps = try #require(try json(try h.desactl("backup", "snapshots", a, "--json")) as? [[String: Any]])
        #expect(snaps.count == 1, "a refused restore takes no safety snapshot either")
        // Raised again, it fits and comes back.
        try #require(try h.desactl("quota", "set", a, "64MiB").ok)
        let ok = try h.desactl("backup", "restore", a)
        #expect(ok.ok, "\(ok.stdout) \(ok.stderr)")
        #expect(FileManager.default.fileExists(atPath: pub + "/big.bin"))
    }

    @Test("an append-only repository behind rclone takes snapshots and refuses to forget them")
    func appendOnly() throws {
        let port = SandboxHarness.freePort()
        let h = try sandbox("bkappend", settings: ["repository": "\"rest:http://127.0.0.1:\(port)/\"", "forget_after_run": "false"])
        defer { h.destroy() }
        let repo = h.dir + "/rclone-repo"
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        var o = Spawn.Options()
        o.stdout = .append(h.dir + "/rclone.log")
        let pid = try Spawn.start(["/usr/bin/rclone", "serve", "restic", "--append-only", "--addr", "127.0.0.1:\(port)", repo], o)
        defer { kill(pid, SIGTERM); _ = Spawn.wait(pid) }
        for _ in 0..<50 where !Processes.listensOnLoopback(port: port) { usleep(100_000) }
        let initR = try h.desactl("backup", "init")
        try #require(initR.ok, "\(initR.message)")
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(2), "--with-db").ok)
        let run = try h.desactl("backup", "run", "--all")
        #expect(run.ok, "\(run.stdout) \(run.stderr)")
        let slug = try h.tenants().map { $0["slug"] as! String }.sorted()[0]
        #expect(try h.desactl("backup", "run", slug).ok)
        let forget = try h.desactl("backup", "forget")
        #expect(!forget.ok, "an append-only repository let snapshots be removed: \(forget.stdout)")
        let snaps = try #require(try json(try h.desactl("backup", "snapshots", slug, "--json")) as? [[String: Any]])
        #expect(snaps.count == 2, "\(snaps)")
        #expect(try h.desactl("backup", "restore", slug, "--to", h.dir + "/aside").ok)
    }
}

/// Failures and new servers: each its own sandbox.
@Suite("Backups: failures stay loud, and a village moves to a new server", .serialized)
struct BackupFailureTests {
    let t = BackupTests()

    @Test("a vanished database, an unreadable home and a dump that dies half-way: the others are backed up, the three named, no truncated snapshot left")
    func threeFailures() throws {
        let h = try t.sandbox("bkfail")
        defer { h.destroy() }
        try #require(try h.desactl("backup", "init").ok)
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(5), "--with-db").ok)
        let slugs = try h.tenants().map { $0["slug"] as! String }.sorted()
        try #require(try h.desactl("backup", "run", "--all").ok)
        let (gone, unreadable, truncated) = (slugs[0], slugs[1], slugs[2])
        try #require(try h.sql("DROP DATABASE \(try t.db(gone, h))").ok)
        try FileManager.default.moveItem(atPath: h.dir + "/srv/" + unreadable, toPath: h.dir + "/moved-away")
        // mariadb-dump dies half-way through one database, exiting 0 (the worst case).
        let wrapper = h.dir + "/dump-wrapper"
        try """
        #!/bin/bash
        for a in "$@"; do [[ $a == --result-file=* ]] && out=${a#--result-file=}; done
        /usr/bin/mariadb-dump "$@" || exit $?
        if [[ " $* " == *" \(try t.db(truncated, h)) "* ]]; then head -c 300 "$out" > "$out.part" && mv "$out.part" "$out"; fi
        exit 0
        """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        try h.set("mariadb", ["dump_binary": "\"\(wrapper)\""])
        let r = try h.desactl("backup", "run", "--all", "--json")
        #expect(r.status == 1)
        let doc = try #require(try t.json(r) as? [String: Any])
        let failed = (doc["failed"] as? [[String: Any]] ?? []).map { $0["slug"] as! String }
        #expect(Set(failed) == [gone, unreadable, truncated], "\(r.stdout)")
        #expect((doc["done"] as? [[String: Any]])?.count == 2)
        let reasons = Dictionary((doc["failed"] as? [[String: Any]] ?? []).map { ($0["slug"] as! String, $0["reason"] as! String) }, uniquingKeysWith: { a, _ in a })
        #expect(reasons[truncated]?.contains("no \"Dump completed\" trailer") == true, "\(reasons)")
        #expect(reasons[unreadable]?.contains("home") == true, "\(reasons)")
        for slug in [gone, unreadable, truncated] {
            let snaps = try #require(try t.json(try h.desactl("backup", "snapshots", slug, "--json")) as? [[String: Any]])
            #expect(snaps.count == 1, "\(slug): a failed backup left a snapshot")
            #expect(try t.health(h, slug) == "down")
        }
        #expect((try? FileManager.default.contentsOfDirectory(atPath: h.dir + "/state/backup/tenants")) == [], "staged dumps are removed")
    }

    @Test("a village restored onto a fresh server from the repository alone: its record, files, database, key and alias")
    func newServer() throws {
        let old = try t.sandbox("bkold")
        defer { old.destroy() }
        try #require(try old.desactl("backup", "init").ok)
        try #require(try old.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi", "--with-db").ok)
        let a = "cileunyi-kulon"
        try #require(try old.desactl("tenant", "alias", "add", a, "cileunyikulon.desa.id").ok)
        let home = old.dir + "/srv/" + a
        #expect(try t.asTenant(old, a, "/bin/mkdir", home + "/public/desa").ok)
        try t.write(old, a, "public/desa/app_key", "base64:c2VjcmV0\n")
        try t.write(old, a, "public/index.html", "<h1>Cileunyi Kulon</h1>\n")
        try t.write(old, a, "public/name with spaces.txt", "spaces\n")
        let dbName = try t.db(a, old)
        try #require(try old.sql("CREATE TABLE \(dbName).penduduk (nik CHAR(16) PRIMARY KEY, nama VARCHAR(50)); INSERT INTO \(dbName).penduduk VALUES ('3204050101010001', 'Asep')").ok)
        try #require(try old.desactl("backup", "run", "--all").ok)

        let new = try SandboxHarness("bknew", mariadb: true, start: false)
        defer { new.destroy() }
        try new.set("backup", ["repository": "\"\(old.dir)/backups/repo\"", "password_file": "\"\(new.dir)/state/copied-password\""])
        try FileManager.default.copyItem(atPath: old.dir + "/state/backup-password", toPath: new.dir + "/state/copied-password")
        try #require(try new.desactl("sandbox", "start").ok)
        let refused = try new.desactl("backup", "restore", "32.04.05.2001")
        #expect(!refused.ok && refused.stderr.contains("--create"), "\(refused.stderr)")
        let r = try new.desactl("backup", "restore", "32.04.05.2001", "--create")
        try #require(r.ok, "\(r.stdout) \(r.stderr)")
        #expect(try new.get("\(a).bandungkab.go.id", "/").body == "<h1>Cileunyi Kulon</h1>\n")
        #expect(try new.get("cileunyikulon.desa.id", "/name%20with%20spaces.txt").body == "spaces\n")
        #expect(try new.sql("SELECT nama FROM \(dbName).penduduk").stdout == "Asep\n")
        let newHome = new.dir + "/srv/" + a
        #expect(Support.read(newHome + "/public/desa/app_key") == "base64:c2VjcmV0\n")
        // Its files belong to its new user, and the credentials are the new server's.
        let u = try #require(try new.users().first { $0.home == newHome })
        var st = stat()
        #expect(lstat(newHome + "/public/desa/app_key", &st) == 0 && Int(st.st_uid) == u.uid)
        #expect(Support.read(newHome + "/.my.cnf") != Support.read(home + "/.my.cnf"))
        #expect(try new.desactl("plan").stdout.contains("Nothing to do"))
    }
}

/// The repository itself: sharing, retention by the clock, a full disk.
@Suite("Backups: one repository shared by every village, kept by policy, safe when its disk fills", .serialized)
struct BackupRepositoryTests {
    let t = BackupTests()

    /// Every entry under `root`: its type, mode, mtime, link target or content's hash.
    static func inventory(_ root: String) -> [String: String] {
        var out: [String: String] = [:]
        let walker = FileManager.default.enumerator(atPath: root)
        while let rel = walker?.nextObject() as? String {
            let p = root + "/" + rel
            var st = stat()
            guard lstat(p, &st) == 0 else { continue }
            var what = "\(st.st_mode):\(st.st_mtim.tv_sec)"
            switch st.st_mode & S_IFMT {
            case S_IFLNK: what += ":-> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: p)) ?? "?")
            case S_IFREG:
                let data = FileManager.default.contents(atPath: p) ?? Data()
                var h: UInt64 = 14_695_981_039_346_656_037
                for b in data { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
                what += ":\(data.count):\(h)"
            default: what += ":dir"
            }
            out[rel] = what
        }
        return out
    }

    @Test("50 villages sharing a 30 MB application tree: the repository holds it once, and each restore is identical, names with spaces, modes, times and links")
    func sharedTree() throws {
        let h = try t.sandbox("bkshare")
        defer { h.destroy() }
        try #require(try h.desactl("backup", "init").ok)
        let csv = Support.read(Support.bandung).split(separator: "\n")
        let withDB = h.dir + "/db.csv", without = h.dir + "/nodb.csv"
        try (csv.prefix(11).joined(separator: "\n") + "\n").write(toFile: withDB, atomically: true, encoding: .utf8)
        try ([csv[0]] + csv.dropFirst(11).prefix(40)).joined(separator: "\n").appending("\n").write(toFile: without, atomically: true, encoding: .utf8)
        try #require(try h.desactl("tenant", "import", withDB, "--with-db").ok)
        try #require(try h.desactl("tenant", "import", without).ok)
        // The application: 300 files of 100 KB of random bytes.
        let tree = h.dir + "/app"
        try FileManager.default.createDirectory(atPath: tree + "/vendor/lib dir", withIntermediateDirectories: true)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<300 {
            let bytes = (0..<(100 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try Data(bytes).write(to: URL(fileURLWithPath: tree + (i % 3 == 0 ? "/vendor/lib dir" : "") + "/file \(i).php"))
        }
        var unique = Int64(300 << 10) * 100
        let tenants = try h.tenants()
        #expect(tenants.count == 50)
        for (i, tn) in tenants.enumerated() {
            let slug = tn["slug"] as! String, uid = tn["uid"] as! Int
            let pub = h.dir + "/srv/\(slug)/public"
            try #require(try h.runner.run(["/bin/cp", "-a", tree, pub + "/app"]).ok)
            let own = (0..<(40 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try Data(own).write(to: URL(fileURLWithPath: pub + "/foto desa \(i).jpg"))
            unique += Int64(own.count)
            chmod(pub + "/foto desa \(i).jpg", 0o600)
            try FileManager.default.createSymbolicLink(atPath: pub + "/latest.jpg", withDestinationPath: "foto desa \(i).jpg")
            var times = [timespec(tv_sec: 1_700_000_000 + i, tv_nsec: 0), timespec(tv_sec: 1_700_000_000 + i, tv_nsec: 0)]
            utimensat(AT_FDCWD, pub + "/foto desa \(i).jpg", &times, 0)
            try #require(try h.runner.run(["/bin/chown", "-R", "-h", "\(uid):\(uid)", pub + "/app", pub + "/foto desa \(i).jpg", pub + "/latest.jpg"]).ok)
        }
        let run = try h.desactl("backup", "run", "--all")
        try #require(run.ok, "\(run.stdout) \(run.stderr)")
        let du = try h.runner.run(["/usr/bin/du", "-sb", h.dir + "/backups/repo"])
        let repo = Int64(du.stdout.split(separator: "\t").first ?? "0") ?? 0
        #expect(Double(repo) <= 1.2 * Double(unique), "repository \(repo) bytes for \(unique) bytes of unique data")
        for tn in tenants.prefix(12).suffix(4) {
            let slug = tn["slug"] as! String
            let aside = h.dir + "/aside-" + slug
            try #require(try h.desactl("backup", "restore", slug, "--to", aside).ok)
            let live = Self.inventory(h.dir + "/srv/\(slug)/public"), back = Self.inventory(aside + "/files/public")
            #expect(live.count > 300 && live == back, "\(slug): \(Set(live.keys).symmetricDifference(back.keys).prefix(5))")
        }
    }

    @Test("retention by the clock: forget keeps exactly what keep_daily and keep_weekly say")
    func retention() throws {
        let h = try t.sandbox("bkkeep", settings: ["keep_daily": "3", "keep_weekly": "2", "keep_monthly": "0"])
        defer { h.destroy() }
        try #require(try h.desactl("backup", "init").ok)
        try #require(try h.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi").ok)
        let start = Date(timeIntervalSince1970: 1_830_297_600 + 12 * 3600)  // 2028-01-01 12:00 UTC
        var days: [Date] = []
        for d in 0..<20 {
            let now = start.addingTimeInterval(Double(d) * 86_400)
            let r = try h.desactl(now: now, "backup", "run", "cileunyi-kulon")
            try #require(r.ok, "\(r.stdout) \(r.stderr)")
            days.append(now)
        }
        // What the policy keeps, newest first: the last of each of the 3 newest days, the last of each of the 2 newest weeks.
        var cal = Calendar(identifier: .iso8601)
        cal.timeZone = .current
        var keep = Set<Date>(), dayBuckets: [String] = [], weekBuckets: [String] = []
        for d in days.reversed() {
            let c = cal.dateComponents([.year, .month, .day, .yearForWeekOfYear, .weekOfYear], from: d)
            let day = "\(c.year!)-\(c.month!)-\(c.day!)", week = "\(c.yearForWeekOfYear!)-\(c.weekOfYear!)"
            if dayBuckets.count < 3, dayBuckets.last != day { dayBuckets.append(day); keep.insert(d) }
            if weekBuckets.count < 2, weekBuckets.last != week { weekBuckets.append(week); keep.insert(d) }
        }
        let f = try h.desactl(now: days.last!, "backup", "forget")
        #expect(f.ok && f.stdout.contains("kept \(keep.count) snapshots, removed \(20 - keep.count)"), "\(f.stdout) \(f.stderr)")
        let snaps = try #require(try t.json(try h.desactl("backup", "snapshots", "cileunyi-kulon", "--json")) as? [[String: Any]])
        let left = Set(snaps.compactMap { ($0["time"] as? String).flatMap(Timestamp.parseRFC3339) }.map { Int($0.timeIntervalSince1970) })
        #expect(left == Set(keep.map { Int($0.timeIntervalSince1970) }), "\(snaps)")
    }

    @Test("the repository's disk fills: a clear error, and the earlier snapshots are intact")
    func diskFull() throws {
        let h = try t.sandbox("bkfull")
        defer { h.destroy() }
        let image = h.dir + "/small.img", mount = h.dir + "/small"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        try #require(try h.runner.run(["/usr/bin/truncate", "-s", "12M", image]).ok)
        try #require(try h.runner.run(["/sbin/mkfs.ext4", "-q", "-m", "0", image]).ok)
        let mounted = try h.runner.run(["/bin/mount", "-o", "loop", image, mount])
        try #require(mounted.ok, "\(mounted.message)")
        defer { _ = try? h.runner.run(["/bin/umount", mount]) }
        try h.set("backup", ["repository": "\"\(mount)/repo\""])
        try #require(try h.desactl("backup", "init").ok)
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(2)).ok)
        let slugs = try h.tenants().map { $0["slug"] as! String }.sorted()
        try #require(try h.desactl("backup", "run", "--all").ok)
        let big = try t.asTenant(h, slugs[1], "/usr/bin/dd", "if=/dev/urandom", "of=" + h.dir + "/srv/\(slugs[1])/public/big.bin", "bs=1M", "count=16", "status=none")
        try #require(big.ok)
        let r = try h.desactl("backup", "run", "--all")
        #expect(r.status == 1 && r.stdout.contains("FAILED \(slugs[1])") && r.stdout.lowercased().contains("no space left"), "\(r.stdout) \(r.stderr)")
        let check = try h.desactl("backup", "verify", "--tenants", "2")
        #expect(check.ok, "\(check.stdout) \(check.stderr)")
        #expect(try h.desactl("backup", "restore", slugs[0], "--to", h.dir + "/aside").ok)
    }
}
