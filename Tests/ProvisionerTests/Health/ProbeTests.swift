import Foundation
import NIOCore
import NIOPosix
import Testing
@testable import Provisioner

/// The health probes against the real nginx and php-fpm of a sandbox, the sandbox's own
/// pebble for HTTPS, and openssl's TLS server for a certificate pebble would not issue
/// (an expired one). Fixed ports in 20500–20599: pebble at 20500…20503, HTTPS at 20510,
/// openssl s_server at 20520.
@Suite("Health probes", .serialized)
struct ProbeTests {
    let group = MultiThreadedEventLoopGroup.singleton

    // MARK: FastCGI records

    @Test("FastCGI: a request's records and parameters read back as written")
    func fastCGIRequest() throws {
        var buffer = FastCGI.request(path: PoolsCapability.pingPath, requestID: 7)
        var reader = FastCGI.RecordReader()
        let events = try reader.read(&buffer)
        #expect(buffer.readableBytes == 0)
        var records: [(type: UInt8, content: [UInt8])] = []
        var current: [UInt8] = []
        for e in events {
            switch e {
            case .content(_, let id, let chunk):
                #expect(id == 7)
                current += Array(chunk.readableBytesView)
            case .recordEnd(let type, _):
                records.append((type, current))
                current = []
            }
        }
        #expect(records.map(\.type) == [1, 4, 4, 5], "BEGIN_REQUEST, PARAMS, empty PARAMS, empty STDIN")
        #expect(records[0].content == [0, 1, 0, 0, 0, 0, 0, 0], "responder, connection closed after the request")
        let params = try #require(FastCGI.decodeParams(records[1].content))
        let byName = Dictionary(params, uniquingKeysWith: { a, _ in a })
        #expect(byName["SCRIPT_NAME"] == "/desa-ping" && byName["SCRIPT_FILENAME"] == "/desa-ping" && byName["REQUEST_METHOD"] == "GET")
        #expect(records[2].content.isEmpty && records[3].content.isEmpty)

        // Long names and values take four-byte lengths.
        let long = String(repeating: "x", count: 300)
        let encoded = FastCGI.encodeParams([("A", long), (long, "")])
        #expect(encoded.prefix(5) == [1, 0x80, 0, 1, 44])
        #expect(FastCGI.decodeParams(encoded).map { $0.map { "\($0.0)=\($0.1)" } } == ["A=\(long)", "\(long)="])
        #expect(FastCGI.decodeParams(Array(encoded.dropLast())) == nil, "a pair cut short is refused")
    }

    /// FPM's answer to a ping, as records: STDOUT split over two records (and the
    /// header block over both), some STDERR, END_REQUEST.
    static func pingAnswer(split: Int) -> ByteBuffer {
        let stdout = Array("Status: 200 OK\r\nContent-type: text/plain\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\npong".utf8)
        var out = ByteBuffer()
        FastCGI.encodeRecord(.stdout, requestID: 1, content: Array(stdout[..<split]), into: &out)
        FastCGI.encodeRecord(.stderr, requestID: 1, content: Array("PHP Notice: something\nmore".utf8), into: &out)
        FastCGI.encodeRecord(.stdout, requestID: 1, content: Array(stdout[split...]), into: &out)
        FastCGI.encodeRecord(.stdout, requestID: 1, content: [], into: &out)
        FastCGI.encodeRecord(.endRequest, requestID: 1, content: [0, 0, 0, 0, 0, 0, 0, 0], into: &out)
        return out
    }

    @Test("FastCGI: STDOUT split across records, and records split across reads at every byte, give one answer")
    func fastCGISplit() throws {
        for split in [1, 10, 30, 84, 87] {
            let whole = Self.pingAnswer(split: split)
            for step in [1, 3, 8, 1000] {
                var reader = FastCGI.RecordReader()
                var answer = FastCGI.ResponseAccumulator()
                var rest = whole, pending = ByteBuffer()
                while rest.readableBytes > 0 {
                    var piece = rest.readSlice(length: min(step, rest.readableBytes))!
                    pending.writeBuffer(&piece)
                    try answer.consume(try reader.read(&pending))
                    #expect(pending.readableBytes < 8, "only a partial header is kept")
                    pending.discardReadBytes()
                }
                #expect(answer.ended && answer.status == 200, "split \(split), step \(step)")
                #expect(String(decoding: answer.body, as: UTF8.self) == "pong", "split \(split), step \(step)")
                #expect(answer.stderrHint == "PHP Notice: something")
            }
        }
        // A Status header other than 200, LF-only line ends (CGI allows them).
        var b = ByteBuffer()
        FastCGI.encodeRecord(.stdout, requestID: 1, content: Array("Status: 404 Not Found\nContent-type: text/html\n\nFile not found.\n".utf8), into: &b)
        var reader = FastCGI.RecordReader(), answer = FastCGI.ResponseAccumulator()
        try answer.consume(try reader.read(&b))
        #expect(answer.status == 404 && String(decoding: answer.body, as: UTF8.self) == "File not found.\n" && !answer.ended)
    }

    @Test("FastCGI: a malformed record is refused; megabytes of output keep 4 KiB; endless headers stop at 8 KiB")
    func fastCGIBounded() throws {
        var bad = ByteBuffer(bytes: [2, 6, 0, 1, 0, 4, 0, 0, 65, 65, 65, 65])
        var reader = FastCGI.RecordReader()
        #expect(throws: FastCGI.ProtocolError.self) { try reader.read(&bad) }
        var badType = ByteBuffer(bytes: [1, 99, 0, 1, 0, 0, 0, 0])
        reader = FastCGI.RecordReader()
        #expect(throws: FastCGI.ProtocolError(message: "malformed FastCGI record (type 99)")) { try reader.read(&badType) }

        // 4 MiB of body in full-size records: the reader hands content on as it comes.
        reader = FastCGI.RecordReader()
        var answer = FastCGI.ResponseAccumulator()
        var head = ByteBuffer()
        FastCGI.encodeRecord(.stdout, requestID: 1, content: Array("Content-type: text/plain\r\n\r\n".utf8), into: &head)
        try answer.consume(try reader.read(&head))
        let chunk = [UInt8](repeating: 0x61, count: 0xFFFF)
        var record = ByteBuffer()
        FastCGI.encodeRecord(.stdout, requestID: 1, content: chunk, into: &record)
        for _ in 0..<64 {
            var r = record
            try answer.consume(try reader.read(&r))
        }
        #expect(answer.body.count == 4096 && answer.complete)
        #expect(answer.droppedBytes == 64 * 0xFFFF - 4096)

        // A header block that never ends is refused once it passes the limit.
        reader = FastCGI.RecordReader()
        answer = FastCGI.ResponseAccumulator()
        var endless = ByteBuffer()
        for _ in 0..<3 {
            FastCGI.encodeRecord(.stdout, requestID: 1, content: Array(("X-Filler: " + String(repeating: "y", count: 4000) + "\r\n").utf8), into: &endless)
        }
        #expect(throws: FastCGI.ProtocolError.self) { try answer.consume(try reader.read(&endless)) }
    }

    // MARK: HTTP and FastCGI against nginx and php-fpm

    @Test("HTTP and FPM ping against the sandbox's nginx and php-fpm: answers, refusals, a slow page that times out alone, 5,000 probes without a leak")
    func againstNginxAndFPM() async throws {
        let h = try SandboxHarness("probes")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(3)).ok)
        let tenants = try h.tenants()
        let domains = tenants.map { $0["domain"] as! String }
        let config = try h.config()
        let nginx = ProbeAddress("127.0.0.1:\(h.port)")!
        let probes = HealthProbes(group: group, timeout: .seconds(2))

        // A village's page, by its Host.
        let page = await probes.http(nginx, host: domains[0])
        #expect(page.outcome == .answered(status: 200), "\(page)")
        #expect(page.body.contains(tenants[0]["name"] as! String), "\(page.body.prefix(300))")
        #expect(page.peerNotAfter == nil)

        // A Host naming no village: nginx's default server says 421.
        let unknown = await probes.http(nginx, host: "tidak-ada.bandungkab.go.id")
        #expect(unknown.outcome == .answered(status: 421), "\(unknown)")

        // Nothing listening.
        let closedPort = SandboxHarness.freePort()
        let refused = await probes.http(ProbeAddress("127.0.0.1:\(closedPort)")!, host: domains[0])
        #expect(refused.outcome == .failed(reason: "connection refused"), "\(refused)")

        // Each live pool answers its ping: FPM itself, no PHP.
        let users = try h.users().sorted { $0.name < $1.name }
        try #require(users.count == 3)
        let socketDir = try #require(config.php.versions.values.first?.socketDir)
        let sockets = tenants.map { socketDir + "/" + h.prefix + ($0["code"] as! String).filter(\.isNumber) + ".sock" }
        for s in sockets {
            let ping = await probes.fpmPing(socket: s, path: PoolsCapability.pingPath)
            #expect(ping.outcome == .answered(status: 200) && ping.body == PoolsCapability.pingResponse, "\(s): \(ping)")
        }
        // Another path is a script FPM does not find.
        let other = await probes.fpmPing(socket: sockets[0], path: "/tidak-ada")
        #expect(other.outcome == .answered(status: 404), "\(other)")

        // Through nginx the ping is never FPM's, on either PHP template: the vhosts pass only
        // .php scripts, and a path nginx sends to the front controller reaches FPM as that
        // script (SCRIPT_NAME /index.php), which runs.
        try #require(try h.desactl("tenant", "set", tenants[1]["slug"] as! String, "--template", "opensid").ok)
        for t in tenants.prefix(2) {
            let code = (t["code"] as! String).filter(\.isNumber)
            let uid = try #require(users.first { $0.name == h.prefix + code }?.uid)
            try h.installPHP(slug: t["slug"] as! String, uid: uid, file: "index.php", "<?php echo 'php ', $_SERVER['SCRIPT_NAME'];")
        }
        for d in domains.prefix(2) {
            for path in ["/desa-ping", "/desa-ping?x=1", "/index.php/desa-ping", "/desa-ping.php", "/desa-ping/index.php", "//desa-ping"] {
                let viaNginx = await probes.http(nginx, host: d, path: path)
                #expect(viaNginx.status != nil && !viaNginx.body.contains(PoolsCapability.pingResponse),
                        "\(d)\(path) reached FPM's ping through nginx: \(viaNginx)")
            }
            let fallback = await probes.http(nginx, host: d, path: "/desa-ping")
            #expect(fallback.outcome == .answered(status: 200) && fallback.body == "php /index.php", "\(d): \(fallback)")
        }

        // A page that sleeps past the timeout fails at the timeout, while 20 probes of a
        // plain file issued with it answer at once: nothing waits on a thread.
        for t in tenants {
            let code = (t["code"] as! String).filter(\.isNumber)
            let uid = try #require(users.first { $0.name == h.prefix + code }?.uid)
            try h.installPHP(slug: t["slug"] as! String, uid: uid, file: "ok.txt", "ok")
        }
        let slug = tenants[0]["slug"] as! String
        let uid = try #require(users.first { $0.name == h.prefix + (tenants[0]["code"] as! String).filter(\.isNumber) }?.uid)
        try h.installPHP(slug: slug, uid: uid, file: "lambat.php", "<?php sleep(8); echo 'late';")
        // Wide margins: the claim is that the slow pages cost their timeout and the quick
        // ones answer long before it, not how fast this shared machine is.
        let quick = HealthProbes(group: group, timeout: .seconds(3))
        let results = await withTaskGroup(of: (Bool, ProbeResult).self) { g in
            for _ in 0..<4 { g.addTask { (true, await quick.http(nginx, host: domains[0], path: "/lambat.php")) } }
            for i in 0..<20 { g.addTask { (false, await quick.http(nginx, host: domains[i % 3], path: "/ok.txt")) } }
            return await g.reduce(into: []) { $0.append($1) }
        }
        for (slow, r) in results {
            if slow {
                #expect(r.outcome == .failed(reason: "no answer within 3 s"), "\(r)")
                #expect(r.elapsed >= .milliseconds(2950) && r.elapsed < .milliseconds(4500), "the slow page took \(r.elapsed)")
            } else {
                #expect(r.outcome == .answered(status: 200) && r.body == "ok", "\(r)")
                #expect(r.elapsed < .seconds(2), "a quick page took \(r.elapsed) beside the slow ones")
            }
        }
        // The timed-out probes closed their connections (nginx is still waiting on PHP); the
        // quick ones' connections were kept until the end of the "sweep".
        #expect(quick.connections.idleCount > 0)
        await quick.closeIdle()
        await probes.closeIdle()
        #expect(Self.tcpSockets(toPort: h.port).isEmpty, "sockets to nginx left open: \(Self.tcpSockets(toPort: h.port))")

        // 5,000 probes at width 64: all answered over at most 64 connections kept alive
        // between them, none left open once the idle ones are closed.
        await probes.closeIdle()
        let before = Self.openSockets()
        let opened = probes.connectionStats.opened
        let started = ContinuousClock.now
        let answered = await withTaskGroup(of: Bool.self) { g in
            var issued = 0, ok = 0
            for _ in 0..<64 {
                let d = domains[issued % 3]
                issued += 1
                g.addTask { await probes.http(nginx, host: d, path: "/ok.txt").body == "ok" }
            }
            for await r in g {
                if r { ok += 1 }
                if issued < 5000 {
                    let d = domains[issued % 3]
                    issued += 1
                    g.addTask { await probes.http(nginx, host: d, path: "/ok.txt").body == "ok" }
                }
            }
            return ok
        }
        let took = ContinuousClock.now - started
        print("ProbeTests: 5000 HTTP probes at width 64 in \(took), \(probes.connectionStats.opened - opened) connections")
        #expect(answered == 5000)
        #expect(probes.connectionStats.opened - opened <= 64, "\(probes.connectionStats)")
        #expect(!Self.tcpSockets(toPort: h.port).isEmpty, "no connection was kept")
        await probes.closeIdle()
        #expect(Self.tcpSockets(toPort: h.port).isEmpty, "sockets to nginx left open: \(Self.tcpSockets(toPort: h.port))")
        #expect(Self.openSockets() <= before + 4, "sockets before \(before), after \(Self.openSockets())")
        // The same for 1,000 pings.
        let pinged = await withTaskGroup(of: Bool.self) { g in
            var issued = 0, ok = 0
            for _ in 0..<64 {
                let s = sockets[issued % 3]
                issued += 1
                g.addTask { await probes.fpmPing(socket: s, path: PoolsCapability.pingPath).body == "pong" }
            }
            for await r in g {
                if r { ok += 1 }
                if issued < 1000 {
                    let s = sockets[issued % 3]
                    issued += 1
                    g.addTask { await probes.fpmPing(socket: s, path: PoolsCapability.pingPath).body == "pong" }
                }
            }
            return ok
        }
        #expect(pinged == 1000)
        #expect(Self.openSockets() <= before + 4, "sockets before \(before), after \(Self.openSockets())")

        // A suspended village has no pool: its socket is gone.
        try #require(try h.desactl("tenant", "suspend", tenants[2]["slug"] as! String).ok)
        let gone = await probes.fpmPing(socket: sockets[2], path: PoolsCapability.pingPath)
        #expect(gone.outcome == .failed(reason: "socket missing: \(sockets[2])"), "\(gone)")
        // php-fpm killed outright leaves its sockets behind, with nobody listening.
        let pidFile = try #require(config.php.versions.values.first?.pidFile)
        try #require(pidFile.hasPrefix(h.dir + "/"))
        // Written again by the master that the suspension's reload started.
        var pid: Int32?
        for _ in 0..<250 {
            pid = Int32(Support.read(pidFile).trimmingCharacters(in: .whitespacesAndNewlines))
            if pid != nil { break }
            usleep(20_000)
        }
        let master = try #require(pid, "no pid in \(pidFile)")
        kill(master, SIGKILL)
        for _ in 0..<100 where kill(master, 0) == 0 { usleep(20_000) }
        let dead = await probes.fpmPing(socket: sockets[0], path: PoolsCapability.pingPath)
        #expect(dead.outcome == .failed(reason: "connection refused: \(sockets[0])"), "\(dead)")
    }

    // MARK: kept connections

    @Test("A kept connection the server closed without saying so: the probe is made again on a new one, sent once, and answers")
    func keptConnectionClosedByServer() async throws {
        let port = SandboxHarness.freePort()
        // An answer that allows keep-alive (HTTP/1.1, no Connection: close), then the server
        // closes the connection, as a server whose keep-alive timeout just passed does.
        let fake = try await FakeHTTPServer.start(port: port) { _ in .raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") }
        let probes = HealthProbes(group: group, timeout: .seconds(3))
        for i in 0..<10 {
            let r = await probes.http(ProbeAddress("127.0.0.1:\(port)")!, host: "desa\(i).example")
            #expect(r.outcome == .answered(status: 200) && r.body == "ok", "probe \(i): \(r)")
        }
        // Each answer was kept, and each kept connection was found closed (at once, or when
        // the next probe tried it): ten connections, ten requests, none sent twice.
        #expect(probes.connectionStats.opened == 10, "\(probes.connectionStats)")
        #expect(fake.requests.count == 10)
        await probes.closeIdle()
        await fake.stop()
    }

    @Test("nginx reloaded between two probes on kept connections: no probe fails, and no socket is left")
    func keptConnectionsAcrossReload() async throws {
        let h = try SandboxHarness("probereload")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(3)).ok)
        let domains = try h.tenants().map { $0["domain"] as! String }
        let nginx = ProbeAddress("127.0.0.1:\(h.port)")!
        let probes = HealthProbes(group: group, timeout: .seconds(3))
        func burst() async -> [ProbeResult] {
            await withTaskGroup(of: ProbeResult.self) { g in
                for i in 0..<32 { g.addTask { await probes.http(nginx, host: domains[i % 3]) } }
                return await g.reduce(into: []) { $0.append($1) }
            }
        }
        #expect(await burst().allSatisfy { $0.outcome == .answered(status: 200) })
        #expect(probes.connections.idleCount > 0)
        // A reload: the old workers close their idle keep-alive connections.
        let master = try #require(Int32(Support.read(try h.config().nginx.pidFile).trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(master, SIGHUP)
        for round in 0..<20 {
            let answers = await burst()
            #expect(answers.allSatisfy { $0.outcome == .answered(status: 200) }, "round \(round): \(answers.filter { $0.status != 200 })")
            usleep(25_000)
        }
        await probes.closeIdle()
        #expect(Self.tcpSockets(toPort: h.port).isEmpty, "sockets to nginx left open: \(Self.tcpSockets(toPort: h.port))")
    }

    // MARK: HTTPS

    @Test("HTTPS against nginx with pebble's certificates: verified with pebble's root; refused with another root, for a name not covered, and for an expired certificate")
    func https() async throws {
        let h = try SandboxHarness("probetls", pebble: (port: 20500, httpsPort: 20510))
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(2)).ok)
        let issued = try h.desactl("cert", "issue", "--all")
        try #require(issued.ok, "\(issued.stdout) \(issued.stderr)")
        let domain = try #require(try h.tenants().first?["domain"] as? String)
        let record = try #require(try h.certRecords()["b001"])
        let tls = ProbeAddress("127.0.0.1:20510")!
        let probes = HealthProbes(group: group, timeout: .seconds(3))

        let ok = await probes.https(tls, host: domain, trustRoots: [h.pebbleRoot])
        #expect(ok.outcome == .answered(status: 200), "\(ok)")
        #expect(ok.body.contains("<html") || ok.body.contains("<!"), "\(ok.body.prefix(200))")
        let notAfter = try #require(record.notAfter)
        #expect(ok.peerNotAfter.map { abs($0.timeIntervalSince(notAfter)) < 1 } == true, "served \(String(describing: ok.peerNotAfter)), recorded \(notAfter)")

        // Many at once share the loaded root.
        let many = await withTaskGroup(of: ProbeResult.Outcome.self) { g in
            for _ in 0..<40 { g.addTask { await probes.https(tls, host: domain, trustRoots: [h.pebbleRoot]).outcome } }
            return await g.reduce(into: []) { $0.append($1) }
        }
        #expect(many.allSatisfy { $0 == .answered(status: 200) }, "\(many.filter { $0 != .answered(status: 200) }.prefix(3))")

        // Another CA's root, or the system's: not trusted. The handshake got as far as the certificate.
        let pki = try LocalPKI(dir: h.dir + "/otherca")
        let wrongRoot = await probes.https(tls, host: domain, trustRoots: [pki.root.cert])
        #expect(wrongRoot.reason?.hasPrefix("TLS: certificate issuer not trusted") == true, "\(wrongRoot)")
        #expect(wrongRoot.peerNotAfter != nil)
        let systemRoots = await probes.https(tls, host: domain, trustRoots: [])
        #expect(systemRoots.reason?.hasPrefix("TLS: certificate issuer not trusted") == true, "\(systemRoots)")

        // A name no certificate covers: nginx answers with the first HTTPS server's certificate.
        let stranger = "tidak-ada.bandungkab.go.id"
        let uncovered = await probes.https(tls, host: stranger, trustRoots: [h.pebbleRoot])
        #expect(uncovered.outcome == .failed(reason: "TLS: certificate does not cover \(stranger)"), "\(uncovered)")

        // Plain HTTP where TLS was expected.
        let plain = await probes.https(ProbeAddress("127.0.0.1:\(h.port)")!, host: domain, trustRoots: [h.pebbleRoot])
        #expect(plain.reason?.hasPrefix("TLS: handshake failed") == true && plain.peerNotAfter == nil, "\(plain)")

        // A root file that does not exist.
        let missing = await probes.https(tls, host: domain, trustRoots: [h.dir + "/tidak-ada.pem"])
        #expect(missing.outcome == .failed(reason: "TLS: cannot read trust roots \(h.dir)/tidak-ada.pem"), "\(missing)")

        // An expired certificate, served by openssl's TLS server; beside it the same CA's
        // current one for the same name, which passes.
        let now = Date()
        let expired = try pki.sign(commonName: domain, names: [domain], from: now.addingTimeInterval(-10 * 86400), to: now.addingTimeInterval(-86400))
        let fresh = try pki.sign(commonName: domain, names: [domain], from: now.addingTimeInterval(-86400), to: now.addingTimeInterval(86400))
        var servers: [Spawned] = []
        defer { for s in servers { s.stop() } }
        for (port, pair) in [(20520, expired), (20521, fresh)] {
            servers.append(try Spawned(["/usr/bin/openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-cert", pair.cert, "-key", pair.key,
                                        "-cert_chain", pki.intermediate.cert, "-www", "-quiet"], environment: ["PATH": "/usr/bin:/bin"]))
            for _ in 0..<250 where !Processes.listensOnLoopback(port: port) { usleep(20_000) }
            try #require(Processes.listensOnLoopback(port: port), "openssl s_server did not start on \(port)")
        }
        let old = await probes.https(ProbeAddress("127.0.0.1:20520")!, host: domain, trustRoots: [pki.root.cert])
        #expect(old.outcome == .failed(reason: "TLS: certificate expired"), "\(old)")
        #expect(old.peerNotAfter.map { $0 < now } == true)
        let current = await probes.https(ProbeAddress("127.0.0.1:20521")!, host: domain, trustRoots: [pki.root.cert])
        #expect(current.outcome == .answered(status: 200), "\(current)")
    }

    // MARK: sockets of this process

    /// How many sockets this process holds open.
    static func openSockets() -> Int {
        socketInodes().count
    }

    static func socketInodes() -> Set<String> {
        var out = Set<String>()
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd), target.hasPrefix("socket:[") {
                out.insert(String(target.dropFirst(8).dropLast()))
            }
        }
        return out
    }

    /// A /proc file read to its end (Foundation stops at the first 4 KiB of /proc/net/tcp).
    static func readProc(_ path: String) -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var out: [UInt8] = [], buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// This process's TCP sockets whose remote port is `port` (any state), from /proc/net/tcp.
    static func tcpSockets(toPort port: Int) -> [String] {
        let mine = socketInodes()
        let hexPort = String(format: "%04X", port)
        return readProc("/proc/net/tcp").split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: " ")
            guard f.count > 9, f[2].hasSuffix(":" + hexPort), mine.contains(String(f[9])) else { return nil }
            return String(line)
        }
    }
}
