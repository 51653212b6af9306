import Foundation
import Synchronization
import Testing
@testable import Provisioner

/// desa ends only the processes it started (recorded with their start time, executable and
/// the sandbox's config), and a port another process holds is refused, naming the port and
/// that process, before anything is started or ended. Real nginx, php-fpm, pebble, MariaDB;
/// every port is the test's own, so sandboxes running beside it are never touched.
@Suite("Sandbox ownership: only what it started is ended; taken ports are refused", .serialized)
struct SandboxOwnershipTests {
    /// Requests one village of `h` in the background until `finish()`, keeping what was not a 200.
    final class Poller: Sendable {
        let failures = Mutex<[String]>([])
        let count = Mutex(0)
        let stop = Mutex(false)
        let done = DispatchSemaphore(value: 0)

        init(_ h: SandboxHarness, host: String) {
            DispatchQueue.global().async { [self] in
                while !stop.withLock({ $0 }) {
                    do {
                        let r = try h.get(host)
                        if r.status != 200 { failures.withLock { $0.append("status \(r.status)") } }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                    count.withLock { $0 += 1 }
                    usleep(20_000)
                }
                done.signal()
            }
        }

        /// Stops polling; the requests made and those that failed.
        func finish() -> (count: Int, failures: [String]) {
            stop.withLock { $0 = true }
            done.wait()
            return (count.withLock { $0 }, failures.withLock { $0 })
        }
    }

    static func pid(_ path: String) -> pid_t? { pid_t(Support.read(path).trimmingCharacters(in: .whitespacesAndNewlines)) }

    /// `desactl sandbox init` of a new directory with these options; the directory is removed after.
    func initSandbox(_ name: String, _ options: [String]) throws -> (dir: String, result: ProcessResult) {
        let dir = "/var/tmp/desa-e2e-\(name)-\(String(UInt32.random(in: 0..<UInt32.max), radix: 36))"
        let prefix = "dx" + String((0..<5).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
        let r = try SystemProcessRunner().run([Support.desactl, "sandbox", "init", dir, "--user-prefix", prefix,
                                               "--uid-min", "460000", "--uid-max", "460999"] + options)
        if r.ok { _ = try? SystemProcessRunner().run([Support.desactl, "sandbox", "destroy", "--config", dir + "/desa.toml"]) }
        try? FileManager.default.removeItem(atPath: dir)
        return (dir, r)
    }

    @Test("two sandboxes on one HTTP port: the second refuses, naming the port and the first's nginx, and the first serves throughout")
    func twoSandboxesOnePort() throws {
        let first = try SandboxHarness("ownfirst")
        defer { first.destroy() }
        let create = try first.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi")
        try #require(create.ok, "\(create.message)")
        let host = "cileunyi-kulon.bandungkab.go.id"
        try #require(try first.get(host).status == 200)
        let c1 = try first.config()
        let php1 = try #require(c1.php.versions["8.2"]?.pidFile)
        let nginx = try #require(Self.pid(c1.nginx.pidFile))
        let php = try #require(Self.pid(php1))
        let poller = Poller(first, host: host)

        // A second sandbox cannot be made on that port...
        let made = try initSandbox("ownrefused", ["--http-port", "\(first.port)"])
        #expect(made.result.status == 1, "\(made.result.stdout) \(made.result.stderr)")
        #expect(made.result.stderr.contains("port \(first.port) on 127.0.0.1 (HTTP) is in use by nginx (pid \(nginx)), not this sandbox's; choose another with --http-port"),
                "\(made.result.stderr)")

        // ...and one made while the port was free (moved onto it in its desa.toml) refuses to start.
        let second = try SandboxHarness("ownsecond", start: false)
        defer { second.destroy() }
        try second.set("nginx", ["listen": "\"127.0.0.1:\(first.port)\"", "probe": "\"127.0.0.1:\(first.port)\""])
        let c2 = try second.config()
        let start = try second.desactl("sandbox", "start")
        #expect(start.status == 1, "\(start.stdout) \(start.stderr)")
        #expect(start.stderr.contains("port \(first.port) on 127.0.0.1 (HTTP) is in use by nginx (pid \(nginx)), not this sandbox's"), "\(start.stderr)")
        #expect(start.stderr.contains("nothing was started or stopped"), "\(start.stderr)")
        #expect(!start.stdout.contains("running"), "\(start.stdout)")
        for file in [c2.nginx.pidFile, c2.php.versions["8.2"]!.pidFile] {
            #expect(!FileManager.default.fileExists(atPath: file), "\(file): the second sandbox started something")
        }
        // Stopping and destroying the second touch nothing of the first's.
        #expect(try second.desactl("sandbox", "stop").ok)
        let destroyed = try second.desactl("sandbox", "destroy")
        #expect(destroyed.ok, "\(destroyed.message)")

        let polled = poller.finish()
        #expect(polled.count > 10 && polled.failures.isEmpty, "\(polled.count) requests; failed: \(polled.failures.prefix(5))")
        #expect(Self.pid(c1.nginx.pidFile) == nginx && Self.pid(php1) == php, "the first's pid files changed")
        #expect(Processes.isAlive(pid: nginx, executable: c1.nginx.binary))
        #expect(Processes.isAlive(pid: php, executable: "/usr/sbin/php-fpm8.2"))
        #expect(try first.get(host).status == 200)
        let status = try first.desactl("sandbox", "status")
        #expect(status.stdout.contains("running (pid \(nginx))"), "\(status.stdout)")
    }

    @Test("a second sandbox's pebble on the first's ports: refused at init and at start; destroying it leaves the first's pebble running")
    func twoPebbles() throws {
        let first = try SandboxHarness("ownpebble", pebble: (port: 24400, httpsPort: 24410))
        defer { first.destroy() }
        let pebble = try #require(Self.pid(first.dir + "/run/pebble.pid"))
        let dns = try #require(Self.pid(first.dir + "/run/pebble-challtestsrv.pid"))
        #expect(Processes.isAlive(pid: pebble, executable: "/usr/bin/pebble"))
        #expect(Processes.isAlive(pid: dns, executable: "/usr/bin/pebble-challtestsrv"))

        let made = try initSandbox("ownpebrefused", ["--http-port", "\(SandboxHarness.freePort())", "--with-pebble",
                                                     "--pebble-port", "24400", "--https-port", "24430"])
        #expect(made.result.status == 1, "\(made.result.stdout) \(made.result.stderr)")
        for line in ["port 24400 on 127.0.0.1 (pebble's ACME) is in use by pebble (pid \(pebble))",
                     "port 24401 on 127.0.0.1 (pebble's management) is in use by pebble (pid \(pebble))",
                     "port 24402 on 127.0.0.1 (pebble's DNS) is in use by pebble-challtestsrv (pid \(dns))",
                     "port 24403 on 127.0.0.1 (pebble's DNS management) is in use by pebble-challtestsrv (pid \(dns))"] {
            #expect(made.result.stderr.contains(line + ", not this sandbox's; choose another with --pebble-port"), "\(made.result.stderr)")
        }

        let second = try SandboxHarness("ownpebble2", pebble: (port: 24420, httpsPort: 24430), start: false)
        defer { second.destroy() }
        try second.setTLS(["directory": "\"https://127.0.0.1:24400/dir\""])
        let start = try second.desactl("sandbox", "start")
        #expect(start.status == 1, "\(start.stdout) \(start.stderr)")
        #expect(start.stderr.contains("port 24400 on 127.0.0.1 (pebble's ACME) is in use by pebble (pid \(pebble)), not this sandbox's"), "\(start.stderr)")
        #expect(!FileManager.default.fileExists(atPath: second.dir + "/run/pebble.pid"))
        let destroyed = try second.desactl("sandbox", "destroy")
        #expect(destroyed.ok, "\(destroyed.message)")

        #expect(Processes.isAlive(pid: pebble, executable: "/usr/bin/pebble"), "the first's pebble was ended")
        #expect(Processes.isAlive(pid: dns, executable: "/usr/bin/pebble-challtestsrv"), "the first's DNS test server was ended")
        let root = try first.runner.run(["/usr/bin/curl", "-sS", "--fail", "--cacert", first.dir + "/pebble/listener.pem",
                                         "https://127.0.0.1:24401/roots/0"])
        #expect(root.ok && root.stdout.contains("BEGIN CERTIFICATE"), "\(root.message)")
    }

    @Test("a port held by a plain listening socket is refused for HTTP, pebble's and MariaDB's ports, naming it; nothing is made or started")
    func squatters() throws {
        let me = "(pid \(getpid()))"
        let port = SandboxHarness.freePort()
        let squatter = try PortSquatter(port: UInt16(port))
        defer { squatter.close() }

        let http = try initSandbox("ownsquathttp", ["--http-port", "\(port)"])
        #expect(http.result.status == 1, "\(http.result.stdout) \(http.result.stderr)")
        #expect(http.result.stderr.contains("port \(port) on 127.0.0.1 (HTTP) is in use by ") && http.result.stderr.contains(me)
                && http.result.stderr.contains("choose another with --http-port"), "\(http.result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: http.dir))

        let db = try initSandbox("ownsquatdb", ["--http-port", "\(SandboxHarness.freePort())", "--with-mariadb", "--mariadb-port", "\(port)"])
        #expect(db.result.status == 1, "\(db.result.stdout) \(db.result.stderr)")
        #expect(db.result.stderr.contains("port \(port) on 127.0.0.1 (MariaDB) is in use by ") && db.result.stderr.contains(me)
                && db.result.stderr.contains("--mariadb-port"), "\(db.result.stderr)")

        // pebble's DNS port is the third of its four.
        let ca = try initSandbox("ownsquatca", ["--http-port", "\(SandboxHarness.freePort())", "--with-pebble",
                                                "--pebble-port", "\(port - 2)", "--https-port", "\(SandboxHarness.freePort())"])
        #expect(ca.result.status == 1, "\(ca.result.stdout) \(ca.result.stderr)")
        #expect(ca.result.stderr.contains("port \(port) on 127.0.0.1 (pebble's DNS) is in use by ") && ca.result.stderr.contains(me),
                "\(ca.result.stderr)")

        // Taken after the sandbox was made: start refuses before starting anything.
        let h = try SandboxHarness("ownsquatstart", mariadb: true, start: false)
        defer { h.destroy() }
        let c = try h.config()
        let mariadb = try #require(h.mariadbPort)
        let taken = try PortSquatter(port: UInt16(mariadb))
        defer { taken.close() }
        let refused = try h.desactl("sandbox", "start")
        #expect(refused.status == 1, "\(refused.stdout) \(refused.stderr)")
        #expect(refused.stderr.contains("port \(mariadb) on 127.0.0.1 (MariaDB) is in use by ") && refused.stderr.contains(me)
                && refused.stderr.contains("nothing was started or stopped"), "\(refused.stderr)")
        for file in [c.nginx.pidFile, c.php.versions["8.2"]!.pidFile, c.mariadb.pidFile] {
            #expect(!FileManager.default.fileExists(atPath: file), "\(file): started despite the taken port")
        }
        taken.close()
        let started = try h.desactl("sandbox", "start")
        #expect(started.ok, "\(started.message)")
        #expect(try h.sql("SELECT 1").stdout == "1\n")
    }

    @Test("nginx masters killed outright in two sandboxes: each start ends its own workers only")
    func leftoverWorkers() throws {
        let a = try SandboxHarness("ownlefta")
        defer { a.destroy() }
        let b = try SandboxHarness("ownleftb")
        defer { b.destroy() }
        let (ca, cb) = (try a.config(), try b.config())
        let s = ServiceControl(mode: .sandbox, runner: a.runner, logDir: ca.logDir, probeAddress: ca.nginx.probe)
        func workers(_ c: Config) throws -> [pid_t] {
            let master = try #require(Self.pid(c.nginx.pidFile))
            let w = Array(ServiceControl.children(of: master))
            try #require(!w.isEmpty)
            kill(master, SIGKILL)
            for _ in 0..<100 where !Processes.isGone(master) { usleep(20_000) }
            return w
        }
        let (wa, wb) = (try workers(ca).sorted(), try workers(cb).sorted())
        #expect(s.runningPID(.nginx(ca)) == nil)
        // The workers still hold each port and answer on it.
        #expect(try a.get("x").status == 421 && b.get("x").status == 421)

        // b moved onto a's port: a's orphaned workers are nginx on that port, and not b's.
        try b.set("nginx", ["listen": "\"127.0.0.1:\(a.port)\"", "probe": "\"127.0.0.1:\(a.port)\""])
        let moved = try b.desactl("sandbox", "start")
        #expect(moved.status == 1, "\(moved.stdout) \(moved.stderr)")
        #expect(moved.stderr.contains("port \(a.port) on 127.0.0.1 (HTTP) is in use by nginx (pids \(wa.map(String.init).joined(separator: ", "))), not this sandbox's"),
                "\(moved.stderr)")
        #expect((wa + wb).allSatisfy { !Processes.isGone($0) }, "a refused start ends nothing")
        try b.set("nginx", ["listen": "\"127.0.0.1:\(b.port)\"", "probe": "\"127.0.0.1:\(b.port)\""])

        let r = try a.desactl("sandbox", "start")
        #expect(r.ok, "\(r.message)")
        #expect(wa.allSatisfy { Processes.isGone($0) }, "a's own leftover workers were ended")
        #expect(wb.allSatisfy { !Processes.isGone($0) }, "b's workers are not a's to end")
        #expect(try b.get("x").status == 421)
        let ra = try #require(Self.pid(ca.nginx.pidFile))
        #expect(Processes.isAlive(pid: ra, executable: ca.nginx.binary))

        let r2 = try b.desactl("sandbox", "start")
        #expect(r2.ok, "\(r2.message)")
        #expect(wb.allSatisfy { Processes.isGone($0) })
        #expect(Self.pid(ca.nginx.pidFile) == ra && Processes.isAlive(pid: ra, executable: ca.nginx.binary), "b's start left a's nginx alone")
        #expect(try a.get("x").status == 421 && b.get("x").status == 421)
    }

    @Test("a record names one process: not once it exited, nor another start time, config or directory")
    func records() throws {
        let dir = "/var/tmp/desa-own-record-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try StartedProcess.launch(["/usr/bin/sleep", "30"], executable: "/usr/bin/sleep", argument: "30", cwd: dir, name: "sleep",
                                          logFile: dir + "/sleep.log", record: dir + "/sleep.started.json",
                                          runner: SystemProcessRunner(), time: .system)
        defer { if r.isRunning { kill(r.pid, SIGKILL) } }
        #expect(StartedProcess.read(dir + "/sleep.started.json") == r)
        #expect(r.isRunning)
        #expect(Processes.stat(of: r.pid)?.session == r.pid, "it leads a session of its own")
        var other = r
        other.startTime += 1
        #expect(!other.isRunning, "another start time: a reused pid")
        other = r
        other.argument = "31"
        #expect(!other.isRunning, "a command line that does not name our file")
        other = r
        other.cwd = "/"
        #expect(!other.isRunning)
        other = r
        other.executable = "/usr/sbin/nginx"
        #expect(!other.isRunning)
        kill(r.pid, SIGKILL)
        for _ in 0..<100 where !Processes.isGone(r.pid) { usleep(10_000) }
        #expect(!r.isRunning, "a zombie runs nothing")
        #expect(Processes.reap(r.pid) == 128 + SIGKILL)
    }
}
