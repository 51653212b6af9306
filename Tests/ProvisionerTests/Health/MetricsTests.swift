import Foundation
import NIOPosix
import Testing
@testable import Provisioner
#if canImport(Glibc)
import Glibc
#endif

/// The samples of a text exposition: `name{labels}` as written → value. Comment lines are
/// kept apart, by metric name.
struct Exposition {
    var samples: [String: Double] = [:]
    var help: [String: String] = [:]
    var type: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ", maxSplits: 3)
                try #require(parts.count == 4, "malformed comment: \(line)")
                if parts[1] == "HELP" { help[String(parts[2])] = String(parts[3]) } else { type[String(parts[2])] = String(parts[3]) }
                continue
            }
            try #require(!line.hasPrefix("#"), "unexpected comment: \(line)")
            let space = try #require(line.lastIndex(of: " "), "no value: \(line)")
            let key = String(line[..<space])
            try #require(samples[key] == nil, "a series twice: \(key)")
            samples[key] = try #require(Double(line[line.index(after: space)...]), "not a number: \(line)")
        }
    }

    /// Series of metric `name` (with or without labels).
    func series(_ name: String) -> [String: Double] {
        samples.filter { $0.key == name || $0.key.hasPrefix(name + "{") }
    }
}

/// What curl saw: the status, the headers (lower-case names) and the body.
struct CurlAnswer {
    var status: Int
    var headers: [String: String]
    var body: String
}

@Suite("Metrics")
struct MetricsTests {
    // MARK: The series

    @Test("the exposition has every series with the values recorded, HELP and TYPE for each")
    func exposition() throws {
        let m = AgentMetrics()
        // Before the first sweep: the three states, at 0.
        let empty = try Exposition(m.exposition())
        #expect(empty.series("desa_tenants") == ["desa_tenants{state=\"ok\"}": 0, "desa_tenants{state=\"degraded\"}": 0, "desa_tenants{state=\"down\"}": 0])
        #expect(empty.series("desa_check_duration_seconds_count").isEmpty)

        m.recordSweep(duration: .milliseconds(2500), tenantsByState: ["ok": 276, "degraded": 3, "down": 1])
        m.recordSweep(duration: .milliseconds(1500), tenantsByState: ["ok": 279, "degraded": 1])
        m.observeCheck("http", duration: .milliseconds(30))
        m.observeCheck("http", duration: .seconds(2))
        m.observeCheck("php", duration: .milliseconds(3))
        m.setTenantValue("certificate_days_left", slug: "cibodas", 61.5)
        m.setTenantValue("certificate_days_left", slug: "sukajadi", -2)

        let e = try Exposition(m.exposition())
        // The last sweep's counts; a state it left out is 0, not missing.
        #expect(e.samples["desa_tenants{state=\"ok\"}"] == 279)
        #expect(e.samples["desa_tenants{state=\"degraded\"}"] == 1)
        #expect(e.samples["desa_tenants{state=\"down\"}"] == 0)
        #expect(e.samples["desa_sweep_duration_seconds"] == 1.5)
        #expect(e.samples["desa_sweeps_total"] == 2)
        let last = try #require(e.samples["desa_last_sweep_timestamp_seconds"])
        #expect(abs(last - Date().timeIntervalSince1970) < 60)

        // The histogram: cumulative buckets in seconds, per check kind.
        #expect(e.samples["desa_check_duration_seconds_bucket{check=\"http\",le=\"0.025\"}"] == 0)
        #expect(e.samples["desa_check_duration_seconds_bucket{check=\"http\",le=\"0.05\"}"] == 1)
        #expect(e.samples["desa_check_duration_seconds_bucket{check=\"http\",le=\"2.5\"}"] == 2)
        #expect(e.samples["desa_check_duration_seconds_bucket{check=\"http\",le=\"+Inf\"}"] == 2)
        #expect(e.samples["desa_check_duration_seconds_count{check=\"http\"}"] == 2)
        #expect(e.samples["desa_check_duration_seconds_sum{check=\"http\"}"] == 2.03)
        #expect(e.samples["desa_check_duration_seconds_bucket{check=\"php\",le=\"0.005\"}"] == 1)
        #expect(e.samples["desa_check_duration_seconds_count{check=\"php\"}"] == 1)
        #expect(e.series("desa_check_duration_seconds_count").count == 2)

        #expect(e.series("desa_certificate_days_left") == [
            "desa_certificate_days_left{tenant=\"cibodas\"}": 61.5,
            "desa_certificate_days_left{tenant=\"sukajadi\"}": -2,
        ])

        #expect(e.type == [
            "desa_tenants": "gauge", "desa_check_duration_seconds": "histogram", "desa_certificate_days_left": "gauge",
            "desa_sweep_duration_seconds": "gauge", "desa_sweeps_total": "counter", "desa_last_sweep_timestamp_seconds": "gauge",
        ])
        #expect(Set(e.help.keys) == Set(e.type.keys))
        #expect(e.help.values.allSatisfy { $0.count > 20 })
    }

    @Test("a deleted tenant's certificate series disappears; the last one takes the family with it")
    func certificateRemoval() throws {
        let m = AgentMetrics()
        m.setTenantValue("certificate_days_left", slug: "cibodas", 30)
        m.setTenantValue("certificate_days_left", slug: "sukajadi", 45)
        m.setTenantValue("certificate_days_left", slug: "cibodas", 29)   // updated, not duplicated
        #expect(try Exposition(m.exposition()).series("desa_certificate_days_left") == [
            "desa_certificate_days_left{tenant=\"cibodas\"}": 29,
            "desa_certificate_days_left{tenant=\"sukajadi\"}": 45,
        ])

        m.setTenantValue("certificate_days_left", slug: "cibodas", nil)
        m.setTenantValue("certificate_days_left", slug: "never-had-one", nil)
        #expect(try Exposition(m.exposition()).series("desa_certificate_days_left") == ["desa_certificate_days_left{tenant=\"sukajadi\"}": 45])
        #expect(m.slugs("certificate_days_left") == ["sukajadi"])

        m.setTenantValue("certificate_days_left", slug: "sukajadi", nil)
        let none = try Exposition(m.exposition())
        #expect(none.series("desa_certificate_days_left").isEmpty)
        #expect(none.type["desa_certificate_days_left"] == nil)
        // The other series are untouched.
        #expect(none.series("desa_tenants").count == 3)

        // A tenant that gets a certificate again is back.
        m.setTenantValue("certificate_days_left", slug: "cibodas", 90)
        #expect(try Exposition(m.exposition()).series("desa_certificate_days_left") == ["desa_certificate_days_left{tenant=\"cibodas\"}": 90])
    }

    // MARK: The config

    @Test("[metrics] is off by default and takes loopback addresses and Unix sockets")
    func configAccepted() throws {
        #expect(try Config.parse("").metrics.listen == "")
        #expect(try Config.parse("").metrics.address == nil)
        let cases: [(String, MetricsListen)] = [
            ("127.0.0.1:9464", .tcp(host: "127.0.0.1", port: 9464)),
            ("127.0.0.2:9464", .tcp(host: "127.0.0.2", port: 9464)),
            ("[::1]:9464", .tcp(host: "::1", port: 9464)),
            ("unix:/run/desa/metrics.sock", .unix(path: "/run/desa/metrics.sock")),
        ]
        for (listen, address) in cases {
            let c = try Config.parse("[metrics]\nlisten = \"\(listen)\"\n")
            #expect(c.metrics.address == address)
            #expect(address.description == listen)
            // The effective config prints it and reads back the same.
            #expect(try Config.parse(c.toml()) == c)
        }
        #expect(try Config().toml().contains("[metrics]\nlisten = \"\"\n"))
    }

    @Test("[metrics] refuses public, malformed and unknown settings, naming the key", arguments: [
        ("listen = \"0.0.0.0:9464\"", "desa.toml: metrics.listen \"0.0.0.0:9464\" is not a loopback address: the metrics name every village and must not be published; use 127.0.0.1:PORT, [::1]:PORT or unix:/PATH"),
        ("listen = \"[::]:9464\"", "desa.toml: metrics.listen \"[::]:9464\" is not a loopback address"),
        ("listen = \"10.1.2.3:9464\"", "desa.toml: metrics.listen \"10.1.2.3:9464\" is not a loopback address"),
        ("listen = \"localhost:9464\"", "desa.toml: metrics.listen \"localhost:9464\": \"localhost\" is not an IP address"),
        ("listen = \"9464\"", "desa.toml: metrics.listen \"9464\" is not an address and port"),
        ("listen = \"::1:9464\"", "desa.toml: metrics.listen \"::1:9464\" is not an address and port"),
        ("listen = \"127.0.0.1:http\"", "desa.toml: metrics.listen \"127.0.0.1:http\": the port must be a number from 1 to 65535"),
        ("listen = \"127.0.0.1:70000\"", "desa.toml: metrics.listen \"127.0.0.1:70000\": the port must be a number from 1 to 65535"),
        ("listen = \"127.0.0.1:0\"", "desa.toml: metrics.listen \"127.0.0.1:0\" needs a port from 1 to 65535"),
        ("listen = \"unix:run/metrics.sock\"", "desa.toml: metrics.listen \"unix:run/metrics.sock\": the socket path must be absolute"),
        ("listen = \"unix:/run/../etc/x.sock\"", "desa.toml: metrics.listen \"unix:/run/../etc/x.sock\": the socket path must be absolute"),
        ("listen = \"unix:/\(String(repeating: "a", count: 110))\"", "a Unix socket path may have at most 107 bytes"),
        ("listen = 9464", "desa.toml: metrics.listen must be a string, not an integer"),
        ("lisen = \"127.0.0.1:9464\"", "desa.toml: unknown key metrics.lisen (did you mean listen?)"),
    ])
    func configRefused(line: String, message: String) {
        let e = #expect(throws: DesaError.self) { try Config.parse("[metrics]\n\(line)\n", source: "desa.toml") }
        #expect(e?.kind == .config)
        #expect(e?.message.contains(message) == true, "got: \(e?.message ?? "")")
    }

    @Test("the server refuses the same addresses, and an empty one")
    func serverRefuses() {
        for listen in ["", "0.0.0.0:9464", "192.168.1.1:80", "nonsense"] {
            #expect(throws: DesaError.self, "accepted \(listen)") {
                try MetricsServer(listen: listen, metrics: AgentMetrics(), group: MultiThreadedEventLoopGroup.singleton)
            }
        }
    }

    // MARK: The server

    @Test("GET /metrics on 127.0.0.1 answers the exposition; other paths 404, other methods 405, oversized requests 413/431")
    func tcpServer() async throws {
        let m = AgentMetrics()
        m.recordSweep(duration: .seconds(3), tenantsByState: ["ok": 2, "down": 1])
        m.setTenantValue("certificate_days_left", slug: "cibodas", 12.25)
        let server = try MetricsServer(listen: "127.0.0.1:0", metrics: m, group: MultiThreadedEventLoopGroup.singleton)
        let bound = try await server.start()
        #expect(bound.hasPrefix("127.0.0.1:") && bound != "127.0.0.1:0", "bound \(bound)")
        let base = "http://\(bound)"
        try await Self.stopping(server) {

        let ok = try await Self.curl(["\(base)/metrics"])
        #expect(ok.status == 200)
        #expect(ok.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        let e = try Exposition(ok.body)
        #expect(e.samples["desa_tenants{state=\"down\"}"] == 1)
        #expect(e.samples["desa_tenants{state=\"degraded\"}"] == 0)
        #expect(e.samples["desa_certificate_days_left{tenant=\"cibodas\"}"] == 12.25)
        #expect(e.samples["desa_sweep_duration_seconds"] == 3)

        // A change shows in the next scrape.
        m.setTenantValue("certificate_days_left", slug: "cibodas", nil)
        let later = try await Self.curl(["\(base)/metrics?x=1"])
        #expect(later.status == 200)
        #expect(try Exposition(later.body).series("desa_certificate_days_left").isEmpty)

        #expect(try await Self.curl(["\(base)/"]).status == 404)
        #expect(try await Self.curl(["\(base)/metrics/x"]).status == 404)
        let post = try await Self.curl(["-X", "POST", "--data", "x", "\(base)/metrics"])
        #expect(post.status == 405)
        #expect(post.headers["allow"] == "GET, HEAD")
        #expect(try await Self.curl(["-X", "DELETE", "\(base)/metrics"]).status == 405)
        #expect(try await Self.curl(["-X", "POST", "-H", "Expect:", "--data", String(repeating: "x", count: 4096), "\(base)/metrics"]).status == 413)
        #expect(try await Self.curl(["-H", "X-Big: \(String(repeating: "y", count: 9000))", "\(base)/metrics"]).status == 431)
        // The server still answers after refusing.
        #expect(try await Self.curl(["\(base)/metrics"]).status == 200)
        }
        let after = try await BlockingThread.run("curl") {
            try SystemProcessRunner().run(["/usr/bin/curl", "-sS", "--max-time", "5", "\(base)/metrics"])
        }
        #expect(!after.ok, "still answering after stop")
    }

    @Test("on a Unix socket: the directory is made 0755, the socket 0660, stop removes it; a stale socket is replaced")
    func unixServer() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/run/desa/metrics.sock"
        let m = AgentMetrics()
        m.recordSweep(duration: .milliseconds(10), tenantsByState: ["ok": 7])
        let server = try MetricsServer(listen: "unix:" + path, metrics: m, group: MultiThreadedEventLoopGroup.singleton)
        #expect(try await server.start() == "unix:" + path)
        var st = stat()
        try await Self.stopping(server) {
        #expect(lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK)
        #expect(st.st_mode & 0o777 == 0o660)
        #expect(st.st_uid == getuid())
        #expect(stat(dir + "/run/desa", &st) == 0 && st.st_mode & 0o777 == 0o755)

        let ok = try await Self.curl(["--unix-socket", path, "http://localhost/metrics"])
        #expect(ok.status == 200)
        #expect(ok.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(try Exposition(ok.body).samples["desa_tenants{state=\"ok\"}"] == 7)
        #expect(try await Self.curl(["--unix-socket", path, "http://localhost/other"]).status == 404)

        // A second agent on the same socket is refused; the first keeps it and answers.
        let second = try MetricsServer(listen: "unix:" + path, metrics: m, group: MultiThreadedEventLoopGroup.singleton)
        let busy = await #expect(throws: DesaError.self) { _ = try await second.start() }
        #expect(busy?.message.contains("in use") == true, "got: \(busy?.message ?? "")")
        #expect(try await Self.curl(["--unix-socket", path, "http://localhost/metrics"]).status == 200)
        }
        #expect(lstat(path, &st) != 0 && errno == ENOENT, "the socket file is left after stop")

        // A socket a dead agent left behind (nobody listening) is replaced.
        try Self.makeStaleSocket(path)
        #expect(lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK)
        let again = try MetricsServer(listen: "unix:" + path, metrics: m, group: MultiThreadedEventLoopGroup.singleton)
        _ = try await again.start()
        try await Self.stopping(again) {
            let r = try await Self.curl(["--unix-socket", path, "http://localhost/metrics"])
            #expect(r.status == 200)
        }
        #expect(lstat(path, &st) != 0)
    }

    @Test("a regular file or a link at the socket path is refused and left as it is")
    func unixNotASocket() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/metrics.sock"
        try "precious\n".write(toFile: path, atomically: false, encoding: .utf8)
        let server = try MetricsServer(listen: "unix:" + path, metrics: AgentMetrics(), group: MultiThreadedEventLoopGroup.singleton)
        let e = await #expect(throws: DesaError.self) { _ = try await server.start() }
        #expect(e?.message == "metrics: \(path) exists and is not a socket; it is left as it is (remove it, or set another metrics.listen)")
        #expect(Support.read(path) == "precious\n")
        try await server.stop()   // never started: nothing to do, nothing removed
        #expect(Support.read(path) == "precious\n")

        // A link to a socket of someone else: not followed, not removed.
        let target = dir + "/other.sock"
        try Self.makeStaleSocket(target)
        let link = dir + "/link.sock"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let viaLink = try MetricsServer(listen: "unix:" + link, metrics: AgentMetrics(), group: MultiThreadedEventLoopGroup.singleton)
        await #expect(throws: DesaError.self) { _ = try await viaLink.start() }
        var st = stat()
        #expect(lstat(link, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK)
        #expect(lstat(target, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK)
    }

    // MARK: Helpers

    /// Runs `body`, then stops `server` whether or not `body` threw.
    static func stopping(_ server: MetricsServer, _ body: () async throws -> Void) async throws {
        do { try await body() } catch {
            try? await server.stop()
            throw error
        }
        try await server.stop()
    }

    static func tempDir() throws -> String {
        // Short: a Unix socket path has at most 107 bytes.
        let dir = "/tmp/desa-metrics-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A socket file at `path` that nobody listens on (bound, then the socket closed).
    static func makeStaleSocket(_ path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.enumerated() { buf[i] = b }
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(r == 0, "bind \(path): \(String(cString: strerror(errno)))")
    }

    /// Runs curl (off Swift's cooperative threads) and splits its answer.
    static func curl(_ args: [String]) async throws -> CurlAnswer {
        let r = try await BlockingThread.run("curl") {
            try SystemProcessRunner().run(["/usr/bin/curl", "-sS", "-i", "--max-time", "10"] + args)
        }
        try #require(r.ok, "curl \(args.joined(separator: " ")): \(r.message)")
        let parts = r.stdout.components(separatedBy: "\r\n\r\n")
        let head = parts[0].components(separatedBy: "\r\n")
        let status = try #require(Int(head[0].split(separator: " ")[1]), "status line: \(head[0])")
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return CurlAnswer(status: status, headers: headers, body: parts.dropFirst().joined(separator: "\r\n\r\n"))
    }
}
