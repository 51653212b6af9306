import Foundation
import Testing
@testable import Provisioner

/// desa-agent against a real sandbox: what its sweeps find reaches a real journald, and it
/// speaks the sd_notify protocol systemd's Type=notify units expect.
@Suite("Agent: health sweeps, the journal and sd_notify", .serialized)
struct AgentTests {
    static var agent: String { URL(fileURLWithPath: Support.desactl).deletingLastPathComponent().appendingPathComponent("desa-agent").path }

    func twoTenants() throws -> SandboxHarness {
        let h = try SandboxHarness("agent")
        for (code, name) in [("32.04.05.2001", "Cileunyi Kulon"), ("32.04.05.2002", "Cileunyi Wetan")] {
            let r = try h.desactl("tenant", "create", code, "--name", name, "--district", "Cileunyi")
            try #require(r.ok, "\(r.message)")
        }
        return h
    }

    @Test("a vhost removed and a home opened by hand: down and degraded, said once each in the journal, and cleared after apply")
    func driftReachesTheJournal() throws {
        let h = try twoTenants()
        defer { h.destroy() }
        let once = [Self.agent, "--config", h.configPath, "--once"]
        let clean = try h.runner.run(once)
        #expect(clean.status == 0, "\(clean.message)")
        #expect(clean.stdout == "2 tenants: 2 ok, 0 degraded, 0 down\n")

        let c = try h.config()
        let vhost = c.nginx.sitesDir + "/cileunyi-kulon.conf"
        try FileManager.default.removeItem(atPath: vhost)
        #expect(chmod(h.dir + "/srv/cileunyi-wetan", 0o755) == 0)
        // As a hand's `nginx -s reload` would: the village is no longer served.
        try Self.reloadNginx(c)

        let jdir = h.dir + "/journal"
        let drifted = try h.runner.run([JournalTests.harness, jdir, "--"] + once)
        #expect(drifted.status == 1, "a tenant is down: \(drifted.message)")
        #expect(drifted.stdout.hasPrefix("2 tenants: 0 ok, 1 degraded, 1 down\n"), "\(drifted.stdout)")
        let entries = try JournalTests().entries(jdir, "DESA_CHECK=drift")
        #expect(entries.count == 2)
        let kulon = try #require(entries.first { $0["DESA_TENANT"] as? String == "32.04.05.2001" })
        #expect(kulon["PRIORITY"] as? String == "4")
        #expect(kulon["MESSAGE_ID"] as? String == HealthMessageID.degraded)
        #expect((kulon["DESA_REASON"] as? String ?? "").contains("create-config \(vhost)"))
        let wetan = try #require(entries.first { $0["DESA_TENANT"] as? String == "32.04.05.2002" })
        #expect((wetan["MESSAGE"] as? String ?? "").contains("fix-directory \(h.dir)/srv/cileunyi-wetan"))
        // Without its vhost the village's name reaches nginx's catch-all: its site is down.
        let down = try JournalTests().entries(jdir, "MESSAGE_ID=" + HealthMessageID.down)
        #expect(down.map { $0["DESA_CHECK"] as? String } == ["http"] && down.first?["DESA_SLUG"] as? String == "cileunyi-kulon")
        // The agent only looks: the vhost is still missing until apply.
        #expect(!FileManager.default.fileExists(atPath: vhost))

        let applied = try h.desactl("apply")
        #expect(applied.ok, "\(applied.message)")
        #expect(try h.runner.run([JournalTests.harness, jdir, "--"] + once).status == 0)
        #expect(try JournalTests().entries(jdir, "MESSAGE_ID=" + HealthMessageID.recovered).count == 3)
    }

    @Test("as a service: READY=1 with a status line on the notify socket after the first sweep, a new status, STOPPING=1 on SIGTERM")
    func notifiesSystemd() throws {
        let h = try twoTenants()
        defer { h.destroy() }
        let socketPath = h.dir + "/notify.sock"
        let sock = try NotifySocket(path: socketPath)
        defer { sock.close() }

        let p = try startAgent(h, socket: socketPath)
        defer { p.stop() }

        let ready = try #require(sock.receive(until: { $0.contains("READY=1") }), "no READY=1 from the agent")
        #expect(ready.contains("STATUS=2 tenants: 2 ok, 0 degraded, 0 down"), "\(ready)")
        // A finished sweep lets go of the state lock (the next one takes it again briefly).
        #expect(throws: Never.self) { _ = try StateLock(path: try h.config().lockPath, timeout: 3) }

        try FileManager.default.removeItem(atPath: try h.config().nginx.sitesDir + "/cileunyi-wetan.conf")
        try Self.reloadNginx(try h.config())
        let status = sock.receive(until: { $0.contains("STATUS=2 tenants: 1 ok, 0 degraded, 1 down") })
        #expect(status != nil, "the next sweep did not report the missing vhost")

        p.signal(SIGTERM)
        #expect(sock.receive(until: { $0.contains("STOPPING=1") }) != nil)
        #expect(p.wait(5) == 0)
    }

    /// SIGHUP to the sandbox's nginx, then a moment for its new workers.
    static func reloadNginx(_ c: Config) throws {
        let pid = try #require(Int32(Support.read(c.nginx.pidFile).trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(pid, SIGHUP)
        Thread.sleep(forTimeInterval: 0.5)
    }

    /// The agent as a service on `socket`, every second; the caller stops it.
    func startAgent(_ h: SandboxHarness, socket: String, env: [String: String] = [:]) throws -> Spawned {
        try Spawned([Self.agent, "--config", h.configPath, "--interval", "1"],
                    environment: ["NOTIFY_SOCKET": socket, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"].merging(env) { $1 })
    }

    /// Polls `done` every 50 ms for at most `seconds`.
    func waitUntil(_ seconds: Double, _ done: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if done() { return true }
            usleep(50_000)
        }
        return done()
    }

    /// The agent's round has begun once it holds the state lock: the lock file names its pid.
    func roundStarted(_ lockPath: String, _ p: Spawned) -> Bool {
        waitUntil(20) { Support.read(lockPath).trimmingCharacters(in: .whitespacesAndNewlines) == "\(p.pid)" }
    }

    @Test("SIGTERM in the middle of a hung round: STOPPING=1 and exit 0 within 5 s, and the lock is free at once")
    func stopsDuringARound() throws {
        let h = try SandboxHarness("agent")
        defer { h.destroy() }
        let lockPath = try h.config().lockPath
        let sock = try NotifySocket(path: h.dir + "/notify.sock")
        defer { sock.close() }
        let p = try startAgent(h, socket: h.dir + "/notify.sock", env: ["DESA_TEST_SLOW_ROUND_SECONDS": "30"])
        defer { p.stop() }
        try #require(roundStarted(lockPath, p), "the agent never took the state lock")
        // Still in the round: the lock is taken.
        #expect(throws: DesaError.self) { _ = try StateLock(path: lockPath, timeout: 0) }

        let start = Date()
        p.signal(SIGTERM)
        let seen = sock.collect(for: 5, until: { $0.contains("STOPPING=1") })
        #expect(seen.contains { $0.contains("STOPPING=1") }, "no STOPPING=1; got \(seen)")
        #expect(!seen.contains { $0.contains("READY=1") }, "the hung round never finished, so no READY=1")
        let status = p.wait(5 - Date().timeIntervalSince(start))
        #expect(status == 0, "exit status \(status.map { "\($0)" } ?? "none: still running 5 s after SIGTERM")")

        // The abandoned round died with the process, and its lock with it.
        #expect(throws: Never.self) { _ = try StateLock(path: lockPath, timeout: 0) }
        let plan = try h.desactl("plan")
        #expect(plan.ok, "\(plan.message)")
    }

    @Test("WATCHDOG=1 keeps coming every half WATCHDOG_USEC while a round hangs")
    func watchdogDuringALongRound() throws {
        let h = try SandboxHarness("agent")
        defer { h.destroy() }
        let lockPath = try h.config().lockPath
        let sock = try NotifySocket(path: h.dir + "/notify.sock")
        defer { sock.close() }
        let p = try startAgent(h, socket: h.dir + "/notify.sock",
                               env: ["DESA_TEST_SLOW_ROUND_SECONDS": "30", "WATCHDOG_USEC": "1000000"])
        defer { p.stop() }
        try #require(roundStarted(lockPath, p), "the agent never took the state lock")

        let seen = sock.collect(for: 3)
        let pings = seen.filter { $0 == "WATCHDOG=1" }.count
        #expect(pings >= 3, "\(pings) WATCHDOG=1 in 3 s; got \(seen)")
        #expect(!seen.contains { $0.contains("READY=1") })
        // The round is still running.
        #expect(p.isRunning)
        #expect(throws: DesaError.self) { _ = try StateLock(path: lockPath, timeout: 0) }

        p.signal(SIGTERM)
        #expect(p.wait(5) == 0)
    }

    @Test("--once with the lock held elsewhere: the tenants are checked, drift is skipped after --lock-timeout, naming the lock and its holder")
    func lockTimeout() throws {
        let h = try twoTenants()
        defer { h.destroy() }
        let lockPath = try h.config().lockPath
        let held = try StateLock(path: lockPath)
        defer { withExtendedLifetime(held) {} }

        let start = Date()
        let r = try h.runner.run([Self.agent, "--config", h.configPath, "--once", "--lock-timeout", "1"])
        let took = Date().timeIntervalSince(start)
        #expect(r.status == 0, "\(r.message)")
        #expect(took >= 1 && took < 5, "took \(took) s")
        #expect(r.stdout == "2 tenants: 2 ok, 0 degraded, 0 down\n")
        #expect(r.stderr.contains("drift not checked this sweep"), "\(r.stderr)")
        #expect(r.stderr.contains("holds the lock \(lockPath) (pid \(getpid())) for more than 1 s"), "\(r.stderr)")
    }
}

/// The receiving end of sd_notify: a unix datagram socket, as systemd binds it.
final class NotifySocket {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.enumerated() where i < buf.count - 1 { buf[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw DesaError.system("notify socket \(path): \(errnoText())") }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The first datagram within 20 s that satisfies `match`.
    func receive(until match: (String) -> Bool) -> String? {
        let deadline = Date().addingTimeInterval(20)
        var buf = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0, let s = String(bytes: buf[0..<n], encoding: .utf8), match(s) { return s }
        }
        return nil
    }

    /// Every datagram for `seconds`, or until one satisfies `match`.
    func collect(for seconds: Double = 20, until match: (String) -> Bool = { _ in false }) -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        var buf = [UInt8](repeating: 0, count: 4096)
        var out: [String] = []
        while Date() < deadline {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0, let s = String(bytes: buf[0..<n], encoding: .utf8) {
                out.append(s)
                if match(s) { break }
            }
        }
        return out
    }

    func close() { Glibc.close(fd) }
}
