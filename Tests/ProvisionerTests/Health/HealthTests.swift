import Foundation
import NIOPosix
import Testing
@testable import Provisioner

/// The health sweep against real nginx, php-fpm and journald: what it marks down, what
/// it says in the journal (once per change), and what `desactl health` answers.
@Suite("Health: sweeps of a real sandbox", .serialized)
struct HealthTests {
    static var agent: String { AgentTests.agent }

    static func healthJSON(_ h: SandboxHarness, _ args: String...) throws -> (status: Int32, json: [String: Any]) {
        let r = try h.desactl(["health", "--json"] + args)
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "health --json: \(r.message)")
        return (r.status, j)
    }

    /// The failing checks of each tenant that is not ok, from `desactl health --json`.
    static func failing(_ j: [String: Any]) -> [String: [String: (state: String, reason: String)]] {
        var out: [String: [String: (state: String, reason: String)]] = [:]
        for t in j["tenants"] as? [[String: Any]] ?? [] where t["state"] as? String != "ok" {
            for c in t["checks"] as? [[String: Any]] ?? [] where c["state"] as? String != "ok" {
                out[t["slug"] as! String, default: [:]][c["check"] as! String] = (c["state"] as! String, c["reason"] as! String)
            }
        }
        return out
    }

    @Test("280 villages: a removed pool and a broken web root are exactly the two down, said once each, and recover once each")
    func twoBrokenOf280() throws {
        let h = try SandboxHarness("health")
        defer { h.destroy() }
        let imported = try h.desactl("tenant", "import", Support.bandung)
        try #require(imported.ok, "\(imported.message)")
        let config = try h.config()
        let jdir = h.dir + "/journal"
        func sweep() throws -> ProcessResult {
            try h.runner.run([JournalTests.harness, jdir, "--", Self.agent, "--config", h.configPath, "--once"])
        }
        func entries(_ id: String) throws -> [[String: Any]] { try JournalTests().entries(jdir, "MESSAGE_ID=" + id) }

        let clean = try sweep()
        #expect(clean.status == 0, "\(clean.message)")
        #expect(clean.stdout.hasPrefix("280 tenants: 280 ok, 0 degraded, 0 down\n"), "\(clean.stdout)")
        #expect(try h.desactl("health").status == 0)

        let tenants = try StateStore(path: config.databasePath).tenants()
        try #require(tenants.count == 280)
        let (pool, root) = (tenants[17], tenants[211])
        // One tenant's pool removed by hand (php-fpm reloaded), another's web root closed.
        let php = try #require(config.php.versions[pool.php])
        try FileManager.default.removeItem(atPath: php.poolDir + "/" + pool.userName(prefix: config.userPrefix) + ".conf")
        let master = try #require(Int32((AtomicFiles.read(php.pidFile) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(master, SIGUSR2)
        let socket = try pool.phpSocket(config)
        for _ in 0..<100 where FileManager.default.fileExists(atPath: socket) { Thread.sleep(forTimeInterval: 0.1) }
        #expect(!FileManager.default.fileExists(atPath: socket), "php-fpm dropped the pool's socket")
        // Closed to nginx: its try_files finds nothing and falls through to a 404.
        chmod(root.home(config) + "/public", 0o000)

        let broken = try sweep()
        #expect(broken.status == 1, "down: exit 1; \(broken.message)")
        #expect(broken.stdout.hasPrefix("280 tenants: 278 ok, 0 degraded, 2 down\n"), "\(broken.stdout)")
        let (status, report) = try Self.healthJSON(h)
        #expect(status == 1, "desactl health exits 1 while a tenant is down")
        let failing = Self.failing(report)
        #expect(Set(failing.keys) == [pool.slug, root.slug])
        #expect(failing[pool.slug]?["php"]?.state == "down")
        #expect(failing[pool.slug]?["php"]?.reason.hasPrefix("the pool does not answer") == true, "\(String(describing: failing[pool.slug]))")
        #expect(failing[pool.slug]?["http"] == nil, "its static page still answers")
        #expect(failing[root.slug]?["http"]?.state == "down")
        #expect(failing[root.slug]?["http"]?.reason == "HTTP 404 (expected 200)", "\(String(describing: failing[root.slug]?["http"]?.reason))")
        #expect(failing[pool.slug]?["drift"]?.state == "degraded" && failing[root.slug]?["drift"]?.state == "degraded",
                "both are drift from the state database too")
        #expect(failing[pool.slug]?["drift"]?.reason.contains("desactl apply would:") == true)

        // Exactly one entry per change, found by MESSAGE_ID, with the fields.
        let down = try entries(HealthMessageID.down)
        #expect(down.count == 2, "\(down.map { $0["MESSAGE"] ?? "" })")
        let phpDown = try #require(down.first { $0["DESA_SLUG"] as? String == pool.slug })
        #expect(phpDown["DESA_TENANT"] as? String == pool.code)
        #expect(phpDown["DESA_CHECK"] as? String == "php")
        #expect(phpDown["DESA_STATE"] as? String == "down")
        #expect(phpDown["DESA_PREVIOUS_STATE"] as? String == "ok")
        #expect((phpDown["DESA_REASON"] as? String)?.hasPrefix("the pool does not answer") == true)
        #expect(phpDown["PRIORITY"] as? String == "3")
        #expect(down.contains { $0["DESA_SLUG"] as? String == root.slug && $0["DESA_CHECK"] as? String == "http" })
        let degraded = try entries(HealthMessageID.degraded)
        #expect(degraded.count == 2 && degraded.allSatisfy { $0["DESA_CHECK"] as? String == "drift" && $0["PRIORITY"] as? String == "4" })

        // An unchanged state is not said again.
        #expect(try sweep().status == 1)
        #expect(try entries(HealthMessageID.down).count == 2)
        #expect(try entries(HealthMessageID.degraded).count == 2)

        // Repaired: one recovery each, and health exits 0.
        chmod(root.home(config) + "/public", 0o750)
        let applied = try h.desactl("apply")
        #expect(applied.ok, "\(applied.message)")
        let repaired = try sweep()
        #expect(repaired.status == 0, "\(repaired.stdout)")
        let recovered = try entries(HealthMessageID.recovered)
        let pairs = recovered.map { "\($0["DESA_SLUG"] as? String ?? "?")/\($0["DESA_CHECK"] as? String ?? "?")" }.sorted()
        #expect(pairs == ["\(pool.slug)/drift", "\(pool.slug)/php", "\(root.slug)/drift", "\(root.slug)/http"].sorted())
        #expect(recovered.allSatisfy { $0["PRIORITY"] as? String == "5" })
        #expect(try entries(HealthMessageID.down).count == 2)
        let after = try h.desactl("health")
        #expect(after.status == 0, "\(after.stdout)")
        #expect(after.stdout.contains("280 tenants: 280 ok, 0 degraded, 0 down"))

        // One tenant's view: its checks, and its changes (from the journal, or the record).
        let one = try h.desactl("health", pool.slug)
        #expect(one.status == 0)
        #expect(one.stdout.contains("php") && one.stdout.contains("http") && one.stdout.contains("drift"))
    }

    @Test("a tenant whose PHP sleeps past the timeout is down after the timeout and delays nobody")
    func slowPHP() throws {
        let h = try SandboxHarness("health-slow")
        defer { h.destroy() }
        let imported = try h.desactl("tenant", "import", try h.bandungSubset(20))
        try #require(imported.ok, "\(imported.message)")
        try h.set("health", ["timeout": "2.0"])
        let config = try h.config()
        let tenants = try StateStore(path: config.databasePath).tenants()
        let slow = tenants[5]
        let index = slow.home(config) + "/public/index.php"
        try "<?php sleep(30); echo 'late';\n".write(toFile: index, atomically: false, encoding: .utf8)
        chmod(index, 0o644)

        // A sweep starts no PHP worker to check an idle pool (5,000 pings at once, each
        // starting a 23 MB worker, exhausted this machine): wait for the workers the
        // import's verification started to leave (pm.process_idle_timeout, 20 s; a worker
        // killed is started again at once), then count after the sweep.
        func pools() -> Set<String> { Set(Processes.fpmPoolsWithWorkers().filter { $0.hasPrefix(h.prefix) }) }
        let idle = Date().addingTimeInterval(40)
        while !pools().isEmpty && Date() < idle { Thread.sleep(forTimeInterval: 0.5) }
        try #require(pools().isEmpty, "php-fpm's idle workers did not leave within 40 s")

        let start = ContinuousClock.now
        let r = try h.runner.run([Self.agent, "--config", h.configPath, "--once"])
        let took = ContinuousClock.now - start
        let slowPool = slow.userName(prefix: config.userPrefix)
        #expect(pools().subtracting([slowPool]).isEmpty, "the sweep started workers for idle pools: \(pools().subtracting([slowPool]).sorted())")
        #expect(r.status == 1, "\(r.message)")
        #expect(r.stdout.hasPrefix("20 tenants: 19 ok, 0 degraded, 1 down\n"), "\(r.stdout)")
        #expect(r.stdout.contains("down \(slow.slug) http: no answer within 2 s"), "\(r.stdout)")
        #expect(took < .seconds(8), "the sweep took \(took): a 30 s page must cost the timeout, not more")
        let (_, report) = try Self.healthJSON(h)
        let seconds = try #require((report["sweep"] as? [String: Any])?["seconds"] as? Double)
        #expect(seconds < 2 + 2.5, "the sweep itself took \(seconds) s with a 2 s timeout")
        #expect(Set(Self.failing(report).keys) == [slow.slug])
    }

    static func tenantChecks(_ j: [String: Any], _ slug: String) -> [String: (state: String, reason: String)] {
        let t = (j["tenants"] as? [[String: Any]] ?? []).first { $0["slug"] as? String == slug } ?? [:]
        var out: [String: (state: String, reason: String)] = [:]
        for c in t["checks"] as? [[String: Any]] ?? [] { out[c["check"] as! String] = (c["state"] as! String, c["reason"] as! String) }
        return out
    }

    @Test("HTTPS through the test CA: verified with SNI, days left counted; near expiry degraded, expired down (clock moved)")
    func https() throws {
        let h = try SandboxHarness("health-https", pebble: (port: 24180, httpsPort: 24190))
        defer { h.destroy() }
        let imported = try h.desactl("tenant", "import", try h.bandungSubset(3))
        try #require(imported.ok, "\(imported.message)")
        let issued = try h.desactl("cert", "issue", "--all")
        try #require(issued.ok, "\(issued.message)")
        let (status, j) = try Self.healthJSON(h, "--now")
        #expect(status == 0, "\(j)")
        let slug = try #require((j["tenants"] as? [[String: Any]])?.first?["slug"] as? String)
        let checks = Self.tenantChecks(j, slug)
        #expect(checks["https"]?.state == "ok", "\(checks)")
        #expect(checks["http"]?.state == "ok", "HTTP answers 301 to HTTPS, as it should: \(checks)")
        #expect(checks["certificate"]?.state == "ok", "\(checks)")

        // The certificate's end, from the state database.
        let store = try StateStore(path: try h.config().databasePath)
        let notAfter = try #require(try store.queue.read { try CertStore.records($0) }.compactMap(\.notAfter).min())
        let soon = try h.desactl(now: notAfter.addingTimeInterval(-5 * 86_400), "health", "--now", "--json")
        let soonChecks = Self.tenantChecks(try #require(try JSONSerialization.jsonObject(with: Data(soon.stdout.utf8)) as? [String: Any]), slug)
        #expect(soon.status == 0, "degraded is not down")
        #expect(soonChecks["certificate"]?.state == "degraded")
        #expect(soonChecks["certificate"]?.reason.contains("5.0 days left") == true, "\(String(describing: soonChecks["certificate"]))")
        let late = try h.desactl(now: notAfter.addingTimeInterval(86_400), "health", "--now", "--json")
        let lateChecks = Self.tenantChecks(try #require(try JSONSerialization.jsonObject(with: Data(late.stdout.utf8)) as? [String: Any]), slug)
        #expect(late.status == 1, "an expired certificate is down")
        #expect(lateChecks["certificate"]?.state == "down")
        #expect(lateChecks["certificate"]?.reason.contains("expired") == true, "\(String(describing: lateChecks["certificate"]))")

        // A served chain the configured roots do not trust is down, with the reason.
        try h.setTLS(["trusted_roots": "[]"])
        let (untrusted, u) = try Self.healthJSON(h, "--now")
        #expect(untrusted == 1)
        let httpsCheck = Self.tenantChecks(u, slug)["https"]
        #expect(httpsCheck?.state == "down" && httpsCheck?.reason.hasPrefix("TLS") == true, "\(String(describing: httpsCheck))")
    }

    @Test("a tenant's database: its user signs in; a password changed behind its back is down, and the reason holds no password")
    func database() throws {
        let h = try SandboxHarness("health-db", mariadb: true)
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "create", "32.04.08.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi", "--with-db").ok)
        let (status, j) = try Self.healthJSON(h, "--now")
        #expect(status == 0)
        #expect(Self.tenantChecks(j, "cileunyi-kulon")["database"]?.state == "ok", "\(j)")

        let changed = "Zz" + String(UInt64.random(in: 1 << 40 ..< 1 << 50))
        for host in ["localhost", "127.0.0.1"] {
            #expect(try h.sql("ALTER USER 'desa_3204082001'@'\(host)' IDENTIFIED BY '\(changed)'").ok)
        }
        let down = try h.desactl("health", "--now", "--json")
        let db = Self.tenantChecks(try #require(try JSONSerialization.jsonObject(with: Data(down.stdout.utf8)) as? [String: Any]), "cileunyi-kulon")["database"]
        #expect(down.status == 1)
        #expect(db?.state == "down")
        #expect(db?.reason.contains("Access denied") == true, "\(String(describing: db))")
        let password = try #require(DatabaseCredentials.read(home: h.dir + "/srv/cileunyi-kulon")?.password)
        #expect(!down.stdout.contains(password) && !down.stdout.contains(changed))
        // rotate-password writes new credentials: ok again.
        #expect(try h.desactl("db", "rotate-password", "cileunyi-kulon").ok)
        let (again, a) = try Self.healthJSON(h, "--now")
        #expect(again == 0 && Self.tenantChecks(a, "cileunyi-kulon")["database"]?.state == "ok")
    }

    @Test("the agent serves Prometheus metrics on loopback when asked: tenants by state, sweep, check durations")
    func metrics() throws {
        let h = try SandboxHarness("health-metrics")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(4)).ok)
        let port = SandboxHarness.freePort()
        try h.set("metrics", ["listen": "\"127.0.0.1:\(port)\""])
        let sock = try NotifySocket(path: h.dir + "/notify.sock")
        defer { sock.close() }
        let p = try Spawned([Self.agent, "--config", h.configPath, "--interval", "1"],
                            environment: ["NOTIFY_SOCKET": h.dir + "/notify.sock", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        defer { p.stop() }
        try #require(sock.receive(until: { $0.contains("READY=1") }) != nil)
        let r = try h.runner.run(["/usr/bin/curl", "-sS", "http://127.0.0.1:\(port)/metrics"])
        try #require(r.ok, "\(r.message)")
        let lines = r.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }
        func value(_ series: String) -> Double? {
            lines.first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
        }
        #expect(value("desa_tenants{state=\"ok\"}") == 4, "\(r.stdout)")
        #expect(value("desa_tenants{state=\"down\"}") == 0)
        #expect(lines.contains { $0.hasPrefix("desa_check_duration_seconds_count{check=\"http\"}") })
        #expect(lines.contains { $0.hasPrefix("desa_sweep_duration_seconds ") })
        p.signal(SIGTERM)
        #expect(p.wait(5) == 0)
    }

    @Test("the agent's renewal service renews a certificate that is due (clock moved past two thirds), and it serves")
    func agentRenews() throws {
        let h = try SandboxHarness("health-renew", pebble: (port: 24200, httpsPort: 24210))
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(2)).ok)
        try #require(try h.desactl("cert", "issue", "--all").ok)
        let store = try StateStore(path: try h.config().databasePath)
        func current() throws -> CertRecord? { try store.queue.read { try CertStore.records($0) }.first { $0.hasCertificate } }
        let before = try #require(try current())
        let (nb, na) = (try #require(before.notBefore), try #require(before.notAfter))
        let due = nb.addingTimeInterval(na.timeIntervalSince(nb) * 0.7)

        let sock = try NotifySocket(path: h.dir + "/notify.sock")
        defer { sock.close() }
        let p = try Spawned([Self.agent, "--config", h.configPath],
                            environment: ["NOTIFY_SOCKET": h.dir + "/notify.sock", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                          "DESA_TEST_NOW": Timestamp.format(due)])
        defer { p.stop() }
        var after: CertRecord?
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            after = try current()
            if after?.serial != before.serial { break }
            usleep(250_000)
        }
        #expect(after?.serial != before.serial, "the agent did not renew within 60 s")
        // A new issuance, not an older one (pebble dates it to the second: a renewal in the
        // same second as the first issue has the same notBefore).
        #expect((after?.notBefore ?? .distantPast) >= nb)
        // nginx serves the new one.
        let probes = HealthProbes(group: MultiThreadedEventLoopGroup.singleton, timeout: .seconds(5))
        let domain = try #require(h.tenants().first?["domain"] as? String)
        let served = try blockingAwait {
            await probes.https(ProbeAddress("127.0.0.1:24210")!, host: domain, trustRoots: [h.pebbleRoot])
        }
        #expect(served.outcome == .answered(status: 200), "\(served)")
        #expect(served.peerNotAfter.map { abs($0.timeIntervalSince(after?.notAfter ?? .distantPast)) < 2 } == true, "\(served)")
        p.signal(SIGTERM)
        #expect(p.wait(5) == 0)
    }
}
