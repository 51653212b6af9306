import Foundation
import Testing
@testable import Provisioner

/// Attacks a hostile tenant can make with nothing but its own user (a shell through
/// `proc_open`), run as that user with `runuser`, against real nginx and php-fpm. After
/// each, nothing outside the home changed (canary files checked by content, mode and
/// owner), the other tenants answer, and nginx and php-fpm pass their checks.
@Suite("Hostile tenant: cannot reach root, another village, or the server", .serialized)
struct HostileTenantTests {
    /// A root-owned directory with files whose content, mode and owner must never change.
    struct Canary {
        let dir: String
        init(_ base: String) throws {
            dir = base + "/canary"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            try "root's own\n".write(toFile: dir + "/index.html", atomically: false, encoding: .utf8)
            try "secret\n".write(toFile: dir + "/secret.conf", atomically: false, encoding: .utf8)
            chmod(dir + "/index.html", 0o644); chmod(dir + "/secret.conf", 0o600)
            snapshot = try Self.read(dir)
        }
        private(set) var snapshot: [String: String] = [:]
        static func read(_ dir: String) throws -> [String: String] {
            var out: [String: String] = [:]
            var st = stat()
            if lstat(dir, &st) == 0 { out["."] = "\(st.st_uid):\(st.st_gid):\(String(st.st_mode, radix: 8))" }
            for n in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() {
                var s = stat()
                lstat(dir + "/" + n, &s)
                out[n] = "\(s.st_uid):\(s.st_gid):\(String(s.st_mode, radix: 8)):\(Support.read(dir + "/" + n))"
            }
            return out
        }
        func unchanged() throws -> Bool { try Self.read(dir) == snapshot }
    }

    func asTenant(_ h: SandboxHarness, _ user: String, _ argv: String...) throws -> ProcessResult {
        try h.runner.run(["/usr/sbin/runuser", "-u", user, "--"] + argv)
    }

    func user(_ h: SandboxHarness, _ code: String) -> String { h.prefix + code.filter(\.isNumber) }

    func threeTenants(_ name: String) throws -> SandboxHarness {
        let h = try SandboxHarness(name)
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(3)).ok)
        return h
    }

    @Test("links and directories a tenant puts where logs and temp files go reach nothing and break nobody")
    func logLinksAndJunk() throws {
        let h = try threeTenants("hostlogs")
        defer { h.destroy() }
        let c = try h.config()
        let canary = try Canary(h.dir)
        let a = user(h, "32.04.05.2001"), home = c.webRoot + "/cileunyi-kulon"
        // The old attack: replace the log files (and the whole logs/ link) with links to
        // root's files, and plant directories where temp files and logs would go.
        #expect(try asTenant(h, a, "/bin/rm", "-f", home + "/logs").ok)
        #expect(try asTenant(h, a, "/bin/ln", "-s", canary.dir, home + "/logs").ok)
        let logDir = c.tenantLogRoot + "/cileunyi-kulon"
        #expect(!(try asTenant(h, a, "/bin/ln", "-sf", canary.dir + "/secret.conf", logDir + "/error.log").ok),
                "the tenant cannot change its server log directory")
        #expect(!(try asTenant(h, a, "/bin/mkdir", logDir + "/php-slow.log.d").ok))
        #expect(try asTenant(h, a, "/bin/mkdir", home + "/public/.index.html.desa-tmp").ok)
        #expect(try asTenant(h, a, "/bin/rm", home + "/public/index.html").ok)

        // An unrelated batch: a new tenant, a reload, the starter page rewritten.
        let r = try h.desactl("tenant", "create", "32.04.05.2009", "--name", "Baru", "--district", "Cileunyi")
        #expect(r.ok, "\(r.stdout) \(r.stderr)")
        #expect(try canary.unchanged(), "root wrote outside the home")
        #expect(try h.nginxTest().ok)
        for t in try h.tenants() {
            #expect(t["status"] as? String == "active", "\(t["slug"]!): \(t["reason"] ?? "")")
            #expect(try h.get(t["domain"] as! String).status == 200)
        }
        // The tenant reads its own logs, and nginx writes the access log.
        let log = try asTenant(h, a, "/bin/cat", logDir + "/access.log", logDir + "/php-slow.log", logDir + "/error.log")
        #expect(log.ok, "\(log.stderr)")
        #expect(log.stdout.contains("GET / HTTP/1.1"), "access log: \(log.stdout)")
        // ...but not another tenant's.
        let other = user(h, "32.04.05.2002")
        #expect(!(try asTenant(h, other, "/bin/cat", logDir + "/access.log").ok))
    }

    @Test("a link in one tenant's web root to another tenant's files is not served")
    func linksToOtherTenants() throws {
        let h = try threeTenants("hostlink")
        defer { h.destroy() }
        let c = try h.config()
        let a = user(h, "32.04.05.2001"), homeA = c.webRoot + "/cileunyi-kulon", homeB = c.webRoot + "/cileunyi-wetan"
        try "DB_PASSWORD=hunter2\n".write(toFile: homeB + "/public/config.php", atomically: false, encoding: .utf8)
        chown(homeB + "/public/config.php", uid_t(getpwnam(user(h, "32.04.05.2002"))!.pointee.pw_uid), 33)
        chmod(homeB + "/public/config.php", 0o640)
        #expect(try asTenant(h, a, "/bin/ln", "-s", homeB + "/public/config.php", homeA + "/public/leak.txt").ok)
        let leak = try h.get("cileunyi-kulon.bandungkab.go.id", "/leak.txt")
        #expect(leak.status == 403 || leak.status == 404, "served with \(leak.status)")
        #expect(!leak.body.contains("hunter2"))
        // Its whole web root pointed at the other's.
        #expect(try asTenant(h, a, "/bin/mv", homeA + "/public", homeA + "/old-public").ok)
        #expect(try asTenant(h, a, "/bin/ln", "-s", homeB + "/public", homeA + "/public").ok)
        let swapped = try h.get("cileunyi-kulon.bandungkab.go.id", "/config.php")
        #expect(!swapped.body.contains("hunter2"), "served \(swapped.status)")
        let index = try h.get("cileunyi-kulon.bandungkab.go.id", "/index.html")
        #expect(!index.body.contains("Cileunyi Wetan"), "served the neighbour's page")
        #expect(try h.get("cileunyi-wetan.bandungkab.go.id").status == 200)
    }

    static func swapper() throws -> String {
        let out = "/var/tmp/desa-swapdir-\(getpid())"
        if FileManager.default.isExecutableFile(atPath: out) { return out }
        let src = Support.packageRoot.appendingPathComponent("Tests/support/swapdir.c").path
        for cc in ["/usr/bin/cc", "/opt/swift/usr/bin/clang"] where FileManager.default.isExecutableFile(atPath: cc) {
            if try SystemProcessRunner().run([cc, "-O2", "-o", out, src]).ok { return out }
        }
        throw DesaError.system("no C compiler to build \(src)")
    }

    @Test("a directory swapped with a link in a loop never lets apply or delete --purge touch what the link names")
    func races() throws {
        let h = try threeTenants("hostrace")
        defer { h.destroy() }
        let c = try h.config()
        let canary = try Canary(h.dir)
        let swap = try Self.swapper()
        defer { unlink(swap) }
        let a = user(h, "32.04.05.2001"), home = c.webRoot + "/cileunyi-kulon"
        #expect(try asTenant(h, a, "/bin/ln", "-s", canary.dir, home + "/bait").ok)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        p.arguments = ["-u", a, "--", swap, home + "/public", home + "/bait", "6"]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(5)
        var rounds = 0
        while Date() < deadline {
            // Drift, as the tenant, so that apply chmods and writes where the swap happens.
            _ = try asTenant(h, a, "/bin/chmod", "0777", home + "/tmp")
            _ = try asTenant(h, a, "/bin/rm", "-f", home + "/public/index.html")
            _ = try h.desactl("apply")
            rounds += 1
        }
        p.waitUntilExit()
        #expect(rounds >= 3)
        #expect(try canary.unchanged(), "apply followed the tenant's link")

        // Purge while the tenant swaps a subdirectory: its processes are ended first, and
        // the removal walks by descriptor.
        var st = stat()
        if lstat(home + "/public", &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK {
            #expect(try asTenant(h, a, "/bin/mv", "-T", home + "/public", home + "/bait2").ok)
            #expect(try asTenant(h, a, "/bin/mv", "-T", home + "/bait", home + "/public").ok)
            #expect(try asTenant(h, a, "/bin/mv", "-T", home + "/bait2", home + "/bait").ok)
        }
        #expect(try asTenant(h, a, "/bin/mkdir", home + "/public/sub").ok)
        let q = Process()
        q.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        q.arguments = ["-u", a, "--", swap, home + "/public/sub", home + "/bait", "20"]
        q.standardOutput = FileHandle.nullDevice
        let started = Date()
        try q.run()
        Thread.sleep(forTimeInterval: 0.3)
        let del = try h.desactl("tenant", "delete", "cileunyi-kulon", "--purge")
        #expect(del.ok, "\(del.stdout) \(del.stderr)")
        q.waitUntilExit()
        #expect(Date().timeIntervalSince(started) < 15, "the tenant's swapper was ended by delete")
        #expect(try canary.unchanged(), "purge followed the tenant's link")
        #expect(!FileManager.default.fileExists(atPath: home))
        #expect(try h.get("cileunyi-wetan.bandungkab.go.id").status == 200)
    }

    @Test("an emptied state database refuses to tear the server down, and says how to proceed")
    func emptiedDatabase() throws {
        let h = try threeTenants("hostdb")
        defer { h.destroy() }
        let c = try h.config()
        let saved = h.dir + "/state.sqlite.saved"
        #expect(try h.runner.run(["/usr/bin/cp", c.databasePath, saved]).ok)
        for f in [c.databasePath + "-wal", c.databasePath + "-shm"] { unlink(f) }
        #expect(truncate(c.databasePath, 0) == 0)
        let r = try h.desactl("tenant", "create", "32.04.05.2009", "--name", "Baru", "--district", "Cileunyi")
        #expect(r.status == 1)
        #expect(r.stderr.contains("does not know") && r.stderr.contains("--remove-unknown"), "\(r.stderr)")
        #expect(try h.users().count == 3, "no user was deleted")
        #expect(try FileManager.default.contentsOfDirectory(atPath: c.nginx.sitesDir).filter { !$0.hasPrefix("_") }.count == 3)
        #expect(FileManager.default.fileExists(atPath: c.nginx.sitesDir + "/_portal.conf"), "the portal stays too")
        #expect(try h.get("cileunyi-kulon.bandungkab.go.id").status == 200)
        let plan = try h.desactl("plan")
        #expect(plan.status == 1 && plan.stdout.contains("unknown"))
        // The right database back: converged, nothing lost.
        for f in [c.databasePath + "-wal", c.databasePath + "-shm"] { unlink(f) }
        #expect(try h.runner.run(["/usr/bin/cp", saved, c.databasePath]).ok)
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"))
    }

    @Test("a user prefix that other users have is refused by sandbox init; destroy removes only its own users")
    func prefixes() throws {
        let h = try threeTenants("hostpfx")
        defer { h.destroy() }
        let r = try h.runner.run([Support.desactl, "sandbox", "init", h.dir + "-twin", "--user-prefix", h.prefix, "--http-port", "1"])
        #expect(r.status == 1 && r.stderr.contains("already used"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: h.dir + "-twin"))
        // A user with a tenant's name that desa did not make is never adopted.
        let foreign = h.prefix + "3204052009"
        #expect(try h.runner.run(["/usr/sbin/useradd", "-M", "-s", "/usr/sbin/nologin", foreign]).ok)
        defer { _ = try? h.runner.run(["/usr/sbin/userdel", foreign]) }
        let c = try h.desactl("tenant", "create", "32.04.05.2009", "--name", "Baru", "--district", "Cileunyi")
        #expect(c.status == 1 && c.stdout.contains("never takes over"), "\(c.stdout)")
        #expect(getpwnam(foreign) != nil)
        // destroy removes the users its state recorded, by name and UID, and no other.
        let tenantsBefore = try h.users().count
        #expect(try h.desactl("sandbox", "destroy").ok)
        #expect(getpwnam(foreign) != nil, "a user desa did not make survives sandbox destroy")
        #expect(try h.users().count == tenantsBefore - 3)
    }

    @Test("suspend and delete end every process of the tenant")
    func processesEnd() throws {
        let h = try threeTenants("hostproc")
        defer { h.destroy() }
        let a = user(h, "32.04.05.2001")
        let uid = Int(getpwnam(a)!.pointee.pw_uid)
        #expect(try h.runner.runDetached(["/usr/sbin/runuser", "-u", a, "--", "/usr/bin/setsid", "-f", "/bin/sleep", "600"],
                                         logFile: h.dir + "/background.log") == 0)
        #expect(!Processes.pids(ofUID: uid).isEmpty)
        #expect(try h.desactl("tenant", "suspend", "cileunyi-kulon").ok)
        #expect(Processes.pids(ofUID: uid).isEmpty, "a suspended tenant runs nothing")
        #expect(try h.get("cileunyi-kulon.bandungkab.go.id").status == 503)
        #expect(try h.desactl("tenant", "resume", "cileunyi-kulon").ok)
        #expect(try h.runner.runDetached(["/usr/sbin/runuser", "-u", a, "--", "/usr/bin/setsid", "-f", "/bin/sleep", "600"],
                                         logFile: h.dir + "/background.log") == 0)
        let d = try h.desactl("tenant", "delete", "cileunyi-kulon")
        #expect(d.ok, "\(d.stdout) \(d.stderr)")
        #expect(Processes.pids(ofUID: uid).isEmpty)
        #expect(getpwnam(a) == nil)
    }

    @Test("a dead nginx or php-fpm master is found and started again; its orphaned workers do not block the port")
    func deadMasters() throws {
        let h = try threeTenants("hostdead")
        defer { h.destroy() }
        let c = try h.config()
        let home = c.webRoot + "/cileunyi-kulon"
        try "<?php echo 'php ok';".write(toFile: home + "/public/ok.php", atomically: false, encoding: .utf8)
        let s = ServiceControl(config: c, runner: h.runner)
        kill(try #require(s.runningPID(.phpFPM("8.2", c))), SIGKILL)
        Thread.sleep(forTimeInterval: 0.2)
        #expect(s.runningPID(.phpFPM("8.2", c)) == nil)
        let agent = try h.runner.run([AgentTests.agent, "--config", h.configPath, "--once"])
        #expect(agent.status == 3, "the agent does not call a dead php-fpm converged: \(agent.stdout)")
        #expect(s.runningPID(.phpFPM("8.2", c)) != nil, "and it started it again, past the orphaned workers: \(agent.stdout) \(Support.read(c.logDir + "/php8.2-fpm-start.log"))")
        #expect(try h.get("cileunyi-kulon.bandungkab.go.id", "/ok.php").body == "php ok")

        kill(try #require(s.runningPID(.nginx(c))), SIGKILL)
        Thread.sleep(forTimeInterval: 0.2)
        let r = try h.desactl("apply")
        #expect(r.ok, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("nginx was not running; started it again"), "\(r.stdout)")
        #expect(s.runningPID(.nginx(c)) != nil)
        #expect(try h.get("cileunyi-kulon.bandungkab.go.id", "/ok.php").body == "php ok")
        #expect(try h.desactl("tenant", "create", "32.04.05.2009", "--name", "Baru", "--district", "Cileunyi").ok,
                "later changes reload fine")
    }

    @Test("kill -9 at random moments, then apply: both masters run and an old tenant's PHP answers")
    func killLoop() throws {
        let h = try threeTenants("hostkill")
        defer { h.destroy() }
        let c = try h.config()
        try "<?php echo 'php ok';".write(toFile: c.webRoot + "/cileunyi-kulon/public/ok.php", atomically: false, encoding: .utf8)
        let csv = try h.bandungSubset(120)
        let s = ServiceControl(config: c, runner: h.runner)
        for round in 0..<5 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Support.desactl)
            p.arguments = ["--config", h.configPath, round % 2 == 0 ? "tenant" : "apply"] + (round % 2 == 0 ? ["import", csv] : [])
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            if round % 2 == 1 {
                // Something to do for apply: drop a few vhosts.
                for n in try FileManager.default.contentsOfDirectory(atPath: c.nginx.sitesDir).prefix(20) { unlink(c.nginx.sitesDir + "/" + n) }
            }
            try p.run()
            Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.9))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let r = try h.desactl("apply")
            #expect(r.ok, "round \(round): \(r.stdout) \(r.stderr)")
            #expect(s.runningPID(.nginx(c)) != nil && s.runningPID(.phpFPM("8.2", c)) != nil, "round \(round): a master is down")
            #expect(try h.get("cileunyi-kulon.bandungkab.go.id", "/ok.php").body == "php ok", "round \(round)")
        }
    }

    @Test("an alias nginx could not hash is refused with the limit; the longest that fits serves")
    func longAliases() throws {
        let h = try threeTenants("hostalias")
        defer { h.destroy() }
        let label = String(repeating: "a", count: 60)
        let huge = [label, label, label, label, "id"].joined(separator: ".")
        let r = try h.desactl("tenant", "alias", "add", "cileunyi-kulon", huge)
        #expect(r.status == 2 && r.stderr.contains("server_names_hash_bucket_size"), "\(r.stderr)")
        let fits = String(repeating: "b", count: 60) + "." + String(repeating: "c", count: 41) + ".desa.id"
        #expect(fits.count == 110)
        let ok = try h.desactl("tenant", "alias", "add", "cileunyi-wetan", fits)
        #expect(ok.ok, "\(ok.stdout) \(ok.stderr)")
        #expect(try h.get(fits).status == 200)
        #expect(try h.desactl("tenant", "create", "32.04.05.2009", "--name", "Baru", "--district", "Cileunyi").ok)
    }

    @Test("a dry run changes nothing on disk, not even an interrupted apply's rollback journal")
    func dryRunTouchesNothing() throws {
        let h = try threeTenants("hostdry")
        defer { h.destroy() }
        let c = try h.config()
        let vhost = c.nginx.sitesDir + "/cileunyi-kulon.conf"
        let before = Support.read(vhost)
        try RollbackJournal(dir: c.rollbackDir).begin(paths: [vhost])
        try "# half-written\n".write(toFile: vhost, atomically: false, encoding: .utf8)
        #expect(try h.desactl("apply", "--dry-run").ok)
        #expect(Support.read(vhost) == "# half-written\n")
        #expect(RollbackJournal(dir: c.rollbackDir).pending() != nil)
        #expect(try h.desactl("apply").ok)
        #expect(Support.read(vhost) == before)
    }
}
