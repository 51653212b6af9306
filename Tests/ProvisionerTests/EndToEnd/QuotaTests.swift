import Foundation
import Synchronization
import Testing
@testable import Provisioner

/// Quotas with the image backend, for real: loop-mounted ext4 images, real php-fpm running
/// the tenant's PHP (and the programs it starts), real MariaDB, real journald.
@Suite("Quotas: each village its share and no more", .serialized)
struct QuotaTests {
    /// A sandbox with the image backend and a 20 MiB default quota; `processes` per tenant.
    func sandbox(_ name: String, mariadb: Bool = false, processes: Int = 100) throws -> SandboxHarness {
        let h = try SandboxHarness(name, mariadb: mariadb, start: false, initArgs: ["--quota-backend", "image", "--quota", "20MiB"])
        try h.set("quota", ["processes": "\(processes)"])
        let s = try h.desactl("sandbox", "start")
        if !s.ok { h.destroy() }
        try #require(s.ok, "\(s.message)")
        return h
    }

    func user(_ h: SandboxHarness, _ slug: String) throws -> SystemUser {
        try #require(try h.users().first { $0.home == h.dir + "/srv/" + slug })
    }

    /// Puts a PHP script into a tenant's web root, as the tenant.
    func put(_ h: SandboxHarness, _ slug: String, _ name: String, _ php: String) throws {
        let u = try user(h, slug)
        let dir = try DirHandle.openHome(h.dir + "/srv/" + slug).openDir("public")
        try dir.writeFile(name, content: php, mode: 0o640, uid: u.uid, gid: Int(try Users.gid(ofGroup: "www-data")))
    }

    static let filler = """
    <?php
    // Writes as much as it can everywhere it can reach: its web root, its temp and session
    // directories, and through programs it starts, the server's shared writable places.
    function fill($path) {
        $f = @fopen($path, "w");
        if (!$f) return -1;
        $chunk = str_repeat("x", 1 << 20); $n = 0;
        while (@fwrite($f, $chunk) === strlen($chunk) && $n < 200) { $n++; }
        fclose($f);
        return $n;
    }
    $out = ["public" => fill(__DIR__ . "/big.bin"), "tmp" => fill(sys_get_temp_dir() . "/big.bin"),
            "sessions" => fill(session_save_path() . "/big.bin")];
    foreach (["/tmp", "/var/tmp", "/dev/shm", "/run/lock"] as $d) {
        $p = proc_open(["/bin/dd", "if=/dev/zero", "of=$d/desa-quota-test-" . getmyuid(), "bs=1M", "count=40"],
                       [1 => ["pipe", "w"], 2 => ["pipe", "w"]], $pipes);
        fclose($pipes[1]); fclose($pipes[2]);
        $out[$d] = proc_close($p);
    }
    $p = proc_open(["/bin/dd", "if=/dev/zero", "of=" . sys_get_temp_dir() . "/child.bin", "bs=1M", "count=100"],
                   [1 => ["pipe", "w"], 2 => ["pipe", "w"]], $pipes);
    fclose($pipes[1]); fclose($pipes[2]);
    $out["child"] = proc_close($p);
    echo json_encode($out), "\\n";
    """

    static let forker = """
    <?php
    $started = 0; $refused = 0; $keep = [];
    for ($i = 0; $i < 300; $i++) {
        $p = @proc_open(["/bin/sleep", "15"], [], $pipes);
        if ($p === false) { $refused++; } else { $started++; $keep[] = $p; }
    }
    echo json_encode(["started" => $started, "refused" => $refused]), "\\n";
    """

    @Test("a 20 MiB tenant writing everywhere it can lands at most 20 MiB; its neighbour writes 30 MiB; the shared places take nothing; at most 20 processes")
    func writesAndForks() throws {
        let h = try sandbox("quota-fill", processes: 20)
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi").ok)
        try #require(try h.desactl("tenant", "create", "32.04.05.2002", "--name", "Cileunyi Wetan", "--district", "Cileunyi",
                                   "--quota", "64MiB").ok)
        let kulon = try user(h, "cileunyi-kulon"), wetan = try user(h, "cileunyi-wetan")
        try put(h, "cileunyi-kulon", "fill.php", Self.filler)
        try put(h, "cileunyi-wetan", "fill.php", Self.filler)
        let a = try h.get("cileunyi-kulon.bandungkab.go.id", "/fill.php")
        #expect(a.status == 200, "\(a.body)")
        let b = try h.get("cileunyi-wetan.bandungkab.go.id", "/fill.php")
        let wrote = try JSONSerialization.jsonObject(with: Data(b.body.utf8)) as? [String: Int]
        #expect((wrote?["public"] ?? 0) >= 30, "the neighbour writes 30 MiB freely: \(b.body)")

        // What the 20 MiB tenant's UID holds, counted by walking its home: at most 20 MiB.
        let du = try h.runner.run(["/usr/bin/du", "-s", "-B1", h.dir + "/srv/cileunyi-kulon"])
        let bytes = Int64(du.stdout.split(separator: "\t").first ?? "") ?? -1
        #expect(bytes > 15 << 20 && bytes <= 20 << 20, "du says \(bytes) bytes")
        // Nothing of either in the shared places.
        for dir in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"] {
            for u in [kulon, wetan] {
                #expect(!FileManager.default.fileExists(atPath: "\(dir)/desa-quota-test-\(u.uid)"), "\(u.name) wrote into \(dir)")
            }
        }
        // The report agrees with du within 10%, from the filesystem's counters.
        let report = try h.desactl("quota", "report", "--json")
        let rows = try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [[String: Any]] ?? []
        let row = try #require(rows.first { $0["slug"] as? String == "cileunyi-kulon" })
        let used = Double(row["used_bytes"] as? Int ?? 0)
        #expect(abs(used - Double(bytes)) <= 0.1 * Double(bytes), "report \(used), du \(bytes)")
        #expect(row["limit_bytes"] as? Int == 20 << 20 && row["processes_limit"] as? Int == 20)
        let percents = rows.map { $0["percent"] as? Double ?? 0 }
        #expect(percents == percents.sorted(by: >), "worst first: \(percents)")

        // Hundreds of processes: at most its limit run; the neighbour still serves.
        try put(h, "cileunyi-kulon", "fork.php", Self.forker)
        let forks = try h.get("cileunyi-kulon.bandungkab.go.id", "/fork.php")
        let counts = try JSONSerialization.jsonObject(with: Data(forks.body.utf8)) as? [String: Int]
        #expect((counts?["started"] ?? 99) < 20 && (counts?["refused"] ?? 0) > 200, "\(forks.body)")
        #expect(Processes.pids(ofUID: kulon.uid).count <= 20)
        #expect(try h.get("cileunyi-wetan.bandungkab.go.id").status == 200)
        _ = try? Processes.killAll(uid: kulon.uid, gid: kulon.gid, timeout: 5)
    }

    @Test("raising a quota while the site serves: usable at once, 200 throughout; lowering below use refused, nothing changed")
    func raiseAndLower() throws {
        let h = try sandbox("quota-raise")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi").ok)
        let u = try user(h, "cileunyi-kulon")
        let home = h.dir + "/srv/cileunyi-kulon"
        func write(_ mib: Int, _ name: String) throws -> ProcessResult {
            try h.runner.run(["/usr/bin/setpriv", "--reuid=\(u.uid)", "--regid=\(u.gid)", "--clear-groups", "/bin/dd", "if=/dev/zero",
                              "of=\(home)/tmp/\(name)", "bs=1M", "count=\(mib)"])
        }
        #expect(!(try write(25, "a")).ok, "25 MiB does not fit a 20 MiB quota")
        unlink(home + "/tmp/a")
        #expect(try write(15, "a").ok)

        // The site is asked without a pause while the quota goes up.
        let stop = Atomic(false)
        let codes = Mutex<[Int]>([])
        let poller = Thread {
            while !stop.load(ordering: .relaxed) {
                let code = (try? h.get("cileunyi-kulon.bandungkab.go.id"))?.status ?? 0
                codes.withLock { $0.append(code) }
                usleep(10_000)
            }
        }
        poller.start()
        let raised = try h.desactl("quota", "set", "cileunyi-kulon", "30MiB")
        #expect(raised.ok, "\(raised.message)")
        #expect(raised.stdout.contains("1 set-quota"), "within the image's headroom: at once, \(raised.stdout)")
        #expect(try write(12, "b").ok, "the new space is usable at once")
        usleep(300_000)
        stop.store(true, ordering: .relaxed)
        while poller.isExecuting { usleep(10_000) }
        let seen = codes.withLock { $0 }
        #expect(!seen.isEmpty && seen.allSatisfy { $0 == 200 }, "\(Set(seen))")

        // Below what it uses (27 MiB): refused with exit 2, and nothing changed.
        let lower = try h.desactl("quota", "set", "cileunyi-kulon", "20MiB")
        #expect(lower.status == 2 && lower.stderr.contains("uses"), "\(lower.message)")
        let rows = try JSONSerialization.jsonObject(with: Data(try h.desactl("quota", "report", "--json").stdout.utf8)) as? [[String: Any]]
        #expect(rows?.first?["limit_bytes"] as? Int == 30 << 20)
        #expect(try h.desactl("plan").stdout.hasPrefix("Nothing to do"))
        // Beyond twice the image: regrown offline, files kept.
        let big = try h.desactl("quota", "set", "cileunyi-kulon", "100MiB")
        #expect(big.ok && big.stdout.contains("1 regrow-image"), "\(big.message) \(big.stdout)")
        #expect(try write(60, "c").ok)
        #expect(FileManager.default.fileExists(atPath: home + "/tmp/a") && FileManager.default.fileExists(atPath: home + "/tmp/b"))
        #expect(try h.get("cileunyi-kulon.bandungkab.go.id").status == 200)
    }

    @Test("hostile sizes are refused with exit 2 and nothing changes", arguments: ["-1", "1e99", "2XB", "20 MiB", "", "2GB", "99999999999TiB", "0x10", "1.5GiB"])
    func hostileSizes(_ size: String) throws {
        let e = #expect(throws: DesaError.self) { try ByteSize(parsing: size, what: "--quota") }
        #expect(e?.kind == .invalidInput)
        #expect(e?.message.hasPrefix("--quota \(Quote.show(size))") == true, "\(String(describing: e))")
    }

    @Test("sizes people write", arguments: [("512MiB", Int64(512) << 20), ("2GiB", Int64(2) << 30), ("1TiB", Int64(1) << 40),
                                             ("64KiB", Int64(64) << 10), ("1048576", Int64(1) << 20)])
    func sizes(_ text: String, _ bytes: Int64) throws {
        let s = try ByteSize(parsing: text)
        #expect(s.bytes == bytes)
        #expect(try ByteSize(parsing: s.description) == s)
    }

    @Test("a database filled past the quota by the tenant's own account stops taking writes after quota check, reads still work; cleaned up, it writes again")
    func database() throws {
        let h = try sandbox("quota-db", mariadb: true)
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi", "--with-db").ok)
        let u = try user(h, "cileunyi-kulon")
        let cnf = h.dir + "/srv/cileunyi-kulon/.my.cnf"
        let m = try h.config().mariadb
        func asTenant(_ sql: String) throws -> ProcessResult {
            try h.runner.run(["/usr/bin/setpriv", "--reuid=\(u.uid)", "--regid=\(u.gid)", "--clear-groups", m.clientBinary,
                              "--defaults-file=" + cnf, "-N", "-B", "-e", sql])
        }
        #expect(try asTenant("CREATE TABLE blobs (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB").ok)
        for _ in 0..<26 { try #require(try asTenant("INSERT INTO blobs (b) VALUES (REPEAT('x', 1048576))").ok) }
        let checked = try h.desactl("quota", "check", "--json")
        #expect(checked.ok, "\(checked.message)")
        #expect(checked.stdout.contains("\"blocked\": [\n    \"cileunyi-kulon\""), "\(checked.stdout)")
        let refused = try asTenant("INSERT INTO blobs (b) VALUES ('y')")
        #expect(!refused.ok && refused.stderr.contains("denied"), "\(refused.message)")
        #expect(try asTenant("SELECT COUNT(*) FROM blobs").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "26")
        // The health check says it, down, with the percent.
        _ = try h.desactl("health", "--now")
        let health = try h.desactl("health", "cileunyi-kulon", "--json")
        #expect(health.stdout.contains("\"check\": \"quota\"") && health.stdout.contains("its database takes no writes"), "\(health.stdout)")

        // Cleaned up (DELETE is allowed, and the space given back), writes come back.
        #expect(try asTenant("DELETE FROM blobs WHERE id > 2").ok)
        _ = try h.sql("OPTIMIZE TABLE \(try #require(try h.desactl("db", "show", "cileunyi-kulon", "--json").stdout.split(separator: "\"").dropFirst().first { $0.hasPrefix("desa_") })).blobs")
        let again = try h.desactl("quota", "check", "--json")
        #expect(again.stdout.contains("\"unblocked\": [\n    \"cileunyi-kulon\""), "\(again.stdout)")
        #expect(try asTenant("INSERT INTO blobs (b) VALUES ('y')").ok)
    }

    @Test("a home made before quotas moves into its image with its files; after a reboot (every image unmounted) apply mounts them again")
    func moveAndRemount() throws {
        let h = try SandboxHarness("quota-move")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(3)).ok)
        let u = try user(h, "cileunyi-kulon")
        let home = h.dir + "/srv/cileunyi-kulon"
        let own = try DirHandle.openHome(home).openDir("public")
        try own.writeFile("village.html", content: "<p>ours</p>\n", mode: 0o640, uid: u.uid, gid: Int(try Users.gid(ofGroup: "www-data")))
        try h.set("quota", ["backend": "\"image\"", "default": "\"32MiB\""])
        try #require(try h.desactl("sandbox", "stop").ok)
        try #require(try h.desactl("sandbox", "start").ok)
        let moved = try h.desactl("apply")
        #expect(moved.ok && moved.stdout.contains("3 move-into-image"), "\(moved.stdout) \(moved.stderr)")
        #expect(Mounts.table()[home] != nil)
        let served = try h.get("cileunyi-kulon.bandungkab.go.id", "/village.html")
        #expect(served.body == "<p>ours</p>\n", "\(served.status) \(served.body) \((try? FileManager.default.contentsOfDirectory(atPath: home + "/public")) ?? [])")
        #expect(!FileManager.default.fileExists(atPath: h.dir + "/srv/.desa-old-cileunyi-kulon"))

        // A reboot, as far as the homes know it: every image unmounted.
        for t in try h.tenants() {
            #expect(try h.runner.run(["/bin/umount", h.dir + "/srv/" + (t["slug"] as! String)]).ok)
        }
        #expect(try h.get("cileunyi-kulon.bandungkab.go.id", "/village.html").status == 404)
        let remounted = try h.desactl("apply")
        #expect(remounted.ok && remounted.stdout.contains("3 mount-image"), "\(remounted.stdout)")
        #expect(try h.get("cileunyi-kulon.bandungkab.go.id", "/village.html").body == "<p>ours</p>\n")
        #expect(try h.desactl("plan").stdout.hasPrefix("Nothing to do"))

        // Deleted: unmounted, the image archived beside the home.
        #expect(try h.desactl("tenant", "delete", "cileunyi-kulon").ok)
        #expect(Mounts.table()[home] == nil)
        let archived = (try? FileManager.default.contentsOfDirectory(atPath: h.dir + "/state/archive")) ?? []
        #expect(archived.contains { $0.hasPrefix("cileunyi-kulon-3204052001-") && $0.hasSuffix("-files.img") }, "\(archived)")
    }

    @Test("a tenant crossing 90% of its quota: one journal entry with its percent, however often it is swept")
    func crossingJournaledOnce() throws {
        let h = try sandbox("quota-journal")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi").ok)
        let u = try user(h, "cileunyi-kulon")
        #expect(try h.runner.run(["/usr/bin/setpriv", "--reuid=\(u.uid)", "--regid=\(u.gid)", "--clear-groups", "/bin/dd", "if=/dev/zero",
                                  "of=\(h.dir)/srv/cileunyi-kulon/tmp/x", "bs=1M", "count=19"]).ok)
        let jdir = h.dir + "/journal"
        for _ in 0..<3 {
            _ = try h.runner.run([JournalTests.harness, jdir, "--", Support.desactl, "--config", h.configPath, "health", "--now"])
        }
        let entries = try JournalTests().entries(jdir, "DESA_CHECK=quota")
        #expect(entries.count == 1, "\(entries.map { $0["MESSAGE"] ?? "" })")
        #expect(entries.first?["MESSAGE_ID"] as? String == QuotaMessageID.nearly)
        #expect(entries.first?["DESA_QUOTA_PERCENT"] as? String == "95", "\(entries)")
        #expect(entries.first?["DESA_TENANT"] as? String == "32.04.05.2001")
    }
}
