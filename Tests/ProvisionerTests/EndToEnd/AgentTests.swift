import Foundation
import Testing
@testable import Provisioner

/// desa-agent against a real sandbox: drift it finds reaches a real journald, and it
/// speaks the sd_notify protocol systemd's Type=notify units expect.
@Suite("Agent: drift reports and sd_notify", .serialized)
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

    @Test("a vhost removed and a home opened by hand are reported once, as warnings, and cleared after apply")
    func driftReachesTheJournal() throws {
        let h = try twoTenants()
        defer { h.destroy() }
        let once = [Self.agent, "--config", h.configPath, "--once"]
        let clean = try h.runner.run(once)
        #expect(clean.status == 0, "\(clean.message)")
        #expect(clean.stdout == "2 tenants, 0 failed, converged\n")

        let c = try h.config()
        let vhost = c.nginx.sitesDir + "/cileunyi-kulon.conf"
        try FileManager.default.removeItem(atPath: vhost)
        #expect(chmod(h.dir + "/srv/cileunyi-wetan", 0o755) == 0)

        let jdir = h.dir + "/journal"
        let drifted = try h.runner.run([JournalTests.harness, jdir, "--"] + once)
        #expect(drifted.status == 3, "\(drifted.message)")
        #expect(drifted.stdout == "2 tenants, 0 failed, 2 tenants drifted\n")
        let entries = try JournalTests().entries(jdir, "DESA_OP=drift")
        #expect(entries.count == 2)
        let kulon = try #require(entries.first { $0["DESA_TENANT"] as? String == "32.04.05.2001" })
        #expect(kulon["PRIORITY"] as? String == "4")
        #expect((kulon["MESSAGE"] as? String ?? "").contains("create-config \(vhost)"))
        let wetan = try #require(entries.first { $0["DESA_TENANT"] as? String == "32.04.05.2002" })
        #expect((wetan["MESSAGE"] as? String ?? "").contains("fix-directory \(h.dir)/srv/cileunyi-wetan"))
        // The agent only looks: the vhost is still missing until apply.
        #expect(!FileManager.default.fileExists(atPath: vhost))

        let applied = try h.desactl("apply")
        #expect(applied.ok, "\(applied.message)")
        #expect(try h.runner.run(once).status == 0)
    }

    @Test("as a service: READY=1 with a status line on the notify socket, a drift round, STOPPING=1 on SIGTERM")
    func notifiesSystemd() throws {
        let h = try twoTenants()
        defer { h.destroy() }
        let socketPath = h.dir + "/notify.sock"
        let sock = try NotifySocket(path: socketPath)
        defer { sock.close() }

        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.agent)
        p.arguments = ["--config", h.configPath, "--interval", "1"]
        p.environment = ["NOTIFY_SOCKET": socketPath, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }

        let ready = try #require(sock.receive(until: { $0.contains("READY=1") }), "no READY=1 from the agent")
        #expect(ready.contains("STATUS=2 tenants, 0 failed, converged"))

        try FileManager.default.removeItem(atPath: try h.config().nginx.sitesDir + "/cileunyi-wetan.conf")
        let status = sock.receive(until: { $0.contains("STATUS=2 tenants, 0 failed, 1 tenant drifted") })
        #expect(status != nil, "the next round did not report the drift")

        kill(p.processIdentifier, SIGTERM)
        #expect(sock.receive(until: { $0.contains("STOPPING=1") }) != nil)
        p.waitUntilExit()
        #expect(p.terminationReason == .exit && p.terminationStatus == 0)
    }
}

/// The receiving end of sd_notify: a unix datagram socket, as systemd binds it.
final class NotifySocket {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.enumerated() where i < buf.count - 1 { buf[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw DesaError.system("notify socket \(path): \(errnoText())") }
        var tv = timeval(tv_sec: 1, tv_usec: 0)
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

    func close() { Glibc.close(fd) }
}
