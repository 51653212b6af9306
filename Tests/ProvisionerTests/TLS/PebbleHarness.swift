import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing
@testable import Provisioner

/// A real pebble (Let's Encrypt's test CA) on 127.0.0.1 for one test, with
/// `pebble-challtestsrv` as its DNS server (every name resolves to 127.0.0.1 unless
/// `addA` says otherwise). Ports: `basePort` ACME, +1 pebble's management API, +2 DNS,
/// +3 challtestsrv's management API. HTTP-01 is validated on `httpPort` (see
/// `ChallengeNginx`). Start with `PebbleHarness.start`, end with `stop()`.
final class PebbleHarness: @unchecked Sendable {
    struct Options {
        /// `pebble -strict`.
        var strict = false
        /// PEBBLE_WFE_NONCEREJECT (percent of good nonces rejected); nil keeps pebble's 5.
        var nonceReject: Int? = nil
        /// kid → base64url MAC key; non-nil makes an External Account Binding required.
        var eabKeys: [String: String]? = nil
        /// PEBBLE_AUTHZREUSE (percent); nil keeps pebble's 50.
        var authzReuse: Int? = nil
        /// The DNS server pebble asks (`ADDRESS:PORT`, a real BIND for DNS-01); nil: challtestsrv.
        var dnsServer: String? = nil
    }

    let dir: String
    let basePort: Int
    let httpPort: Int
    let options: Options
    var acmePort: Int { basePort }
    var managementPort: Int { basePort + 1 }
    var dnsPort: Int { basePort + 2 }
    var challtestsrvPort: Int { basePort + 3 }
    var directoryURL: String { "https://127.0.0.1:\(acmePort)/dir" }
    /// The certificate of pebble's own HTTPS listener: the trust root for an ACMEClient.
    var listenerCert: String { dir + "/listener.pem" }
    /// Pebble's issuing root of this run (fetched after start), for `openssl verify`.
    var rootCert: String { dir + "/root.pem" }
    var pebbleLog: String { dir + "/pebble.log" }
    let runner = SystemProcessRunner()
    private var pebble: Spawned?
    private var challtestsrv: Spawned?

    private init(basePort: Int, httpPort: Int, options: Options) throws {
        self.basePort = basePort; self.httpPort = httpPort; self.options = options
        dir = try TestDirs.make("desa-pebble")
    }

    static func start(basePort: Int, httpPort: Int, options: Options = .init()) async throws -> PebbleHarness {
        let h = try PebbleHarness(basePort: basePort, httpPort: httpPort, options: options)
        do {
            try await h.launch()
        } catch {
            h.stop()
            throw error
        }
        return h
    }

    private func launch() async throws {
        let cert = try runner.run(["/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                   "-nodes", "-keyout", dir + "/listener.key", "-out", listenerCert, "-days", "2",
                                   "-subj", "/CN=pebble listener", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        try #require(cert.ok, "openssl req: \(cert.message)")
        var pebbleConfig: [String: Any] = [
            "listenAddress": "127.0.0.1:\(acmePort)",
            "managementListenAddress": "127.0.0.1:\(managementPort)",
            "certificate": listenerCert,
            "privateKey": dir + "/listener.key",
            "httpPort": httpPort,
            "tlsPort": basePort + 9,   // tls-alpn-01 is never used
            "ocspResponderURL": "",
            "externalAccountBindingRequired": options.eabKeys != nil,
        ]
        if let keys = options.eabKeys { pebbleConfig["externalAccountMACKeys"] = keys }
        let json = try JSONSerialization.data(withJSONObject: ["pebble": pebbleConfig], options: [.prettyPrinted, .sortedKeys])
        try json.write(to: URL(fileURLWithPath: dir + "/pebble.json"))

        challtestsrv = try Spawned(["/usr/bin/pebble-challtestsrv", "-dns01", "127.0.0.1:\(dnsPort)",
                                    "-http01", "", "-https01", "", "-tlsalpn01", "",
                                    "-management", "127.0.0.1:\(challtestsrvPort)",
                                    "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                                   environment: ["PATH": "/usr/bin:/bin"], logFile: dir + "/challtestsrv.log")
        var env = ["PATH": "/usr/bin:/bin", "PEBBLE_VA_NOSLEEP": "1"]
        if let n = options.nonceReject { env["PEBBLE_WFE_NONCEREJECT"] = String(n) }
        if let n = options.authzReuse { env["PEBBLE_AUTHZREUSE"] = String(n) }
        pebble = try Spawned(["/usr/bin/pebble", "-config", dir + "/pebble.json", "-dnsserver", options.dnsServer ?? "127.0.0.1:\(dnsPort)"]
                             + (options.strict ? ["-strict"] : []),
                             environment: env, logFile: pebbleLog)
        try waitForListener(challtestsrvPort, process: challtestsrv!, log: dir + "/challtestsrv.log")
        try waitForListener(acmePort, process: pebble!, log: pebbleLog)
        try waitForListener(managementPort, process: pebble!, log: pebbleLog)
        let root = try await get("https://127.0.0.1:\(managementPort)/roots/0")
        try #require(root.hasPrefix("-----BEGIN CERTIFICATE-----"), "pebble's root: \(root.prefix(200))")
        try root.write(toFile: rootCert, atomically: true, encoding: .utf8)
    }

    /// Makes `host` resolve to `addresses` for pebble (challtestsrv's /add-a).
    func addA(_ host: String, _ addresses: [String]) async throws {
        let fqdn = host.hasSuffix(".") ? host : host + "."
        let body = try JSONSerialization.data(withJSONObject: ["host": fqdn, "addresses": addresses])
        _ = try await request("http://127.0.0.1:\(challtestsrvPort)/add-a", method: .POST, body: [UInt8](body))
    }

    /// dns-01 through challtestsrv's DNS server, which pebble resolves with.
    var dns01: ChalltestsrvDNS01 { ChalltestsrvDNS01(harness: self) }

    /// `openssl verify` of the chain's leaf against this run's root, the rest of the chain
    /// as untrusted intermediates.
    func verify(chainPEM: String) throws -> ProcessResult {
        let blocks = TestPEM.blocks(chainPEM)
        try #require(blocks.count >= 2, "a chain of leaf and intermediate, got \(blocks.count) certificates")
        let leaf = dir + "/verify-leaf.pem", rest = dir + "/verify-intermediates.pem"
        try blocks[0].write(toFile: leaf, atomically: true, encoding: .utf8)
        try blocks.dropFirst().joined().write(toFile: rest, atomically: true, encoding: .utf8)
        return try runner.run(["/usr/bin/openssl", "verify", "-CAfile", rootCert, "-untrusted", rest, leaf])
    }

    /// pebble's log, for failure messages.
    func log() -> String { String(Support.read(pebbleLog).suffix(3000)) }

    func stop() {
        pebble?.stop()
        challtestsrv?.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func get(_ url: String) async throws -> String {
        String(decoding: try await request(url, method: .GET, body: nil), as: UTF8.self)
    }

    func request(_ url: String, method: HTTPMethod, body: [UInt8]?) async throws -> [UInt8] {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(listenerCert))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        do {
            var req = HTTPClientRequest(url: url)
            req.method = method
            if let body { req.body = .bytes(ByteBuffer(bytes: body)) }
            let resp = try await client.execute(req, timeout: .seconds(10))
            var buf = try await resp.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            try #require(resp.status.code < 300, "\(method) \(url): HTTP \(resp.status.code)")
            return buf.readBytes(length: buf.readableBytes) ?? []
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

/// A DNS01Responder that puts the TXT record in pebble-challtestsrv (`/set-txt`,
/// `/clear-txt`), the DNS server pebble asks. Records what it was asked to do.
struct ChalltestsrvDNS01: DNS01Responder {
    let harness: PebbleHarness
    let calls = NIOLockedValueBox<[String]>([])

    func present(domain: String, txtValue: String) async throws {
        calls.withLockedValue { $0.append("present \(domain) \(txtValue)") }
        let body = try JSONSerialization.data(withJSONObject: ["host": "_acme-challenge.\(domain).", "value": txtValue])
        _ = try await harness.request("http://127.0.0.1:\(harness.challtestsrvPort)/set-txt", method: .POST, body: [UInt8](body))
    }

    func cleanUp(domain: String, txtValue: String) async {
        calls.withLockedValue { $0.append("cleanUp \(domain) \(txtValue)") }
        guard let body = try? JSONSerialization.data(withJSONObject: ["host": "_acme-challenge.\(domain)."]) else { return }
        _ = try? await harness.request("http://127.0.0.1:\(harness.challtestsrvPort)/clear-txt", method: .POST, body: [UInt8](body))
    }
}

/// A real nginx on 127.0.0.1:`port` serving `/.well-known/acme-challenge/` from
/// `challengeDir`, as a host would for http-01. Workers run as www-data: the directories are
/// world-readable.
final class ChallengeNginx: @unchecked Sendable {
    let dir: String
    let port: Int
    var challengeDir: String { dir + "/challenges" }
    private var master: Spawned?

    init(port: Int) throws {
        self.port = port
        dir = try TestDirs.make("desa-nginx")
        try FileManager.default.createDirectory(atPath: challengeDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        let conf = """
        daemon off;
        master_process on;
        worker_processes 1;
        user www-data;
        pid \(dir)/nginx.pid;
        error_log \(dir)/error.log;
        events { worker_connections 64; }
        http {
            access_log \(dir)/access.log;
            client_body_temp_path \(dir)/tmp-body;
            proxy_temp_path \(dir)/tmp-proxy;
            fastcgi_temp_path \(dir)/tmp-fastcgi;
            uwsgi_temp_path \(dir)/tmp-uwsgi;
            scgi_temp_path \(dir)/tmp-scgi;
            server {
                listen 127.0.0.1:\(port);
                location /.well-known/acme-challenge/ {
                    alias \(challengeDir)/;
                    default_type text/plain;
                }
                location / { return 404; }
            }
        }

        """
        try conf.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        do {
            let m = try Spawned(["/usr/sbin/nginx", "-p", dir, "-c", dir + "/nginx.conf", "-e", dir + "/error.log"],
                                environment: ["PATH": "/usr/sbin:/usr/bin:/bin"], logFile: dir + "/stderr.log")
            master = m
            try waitForListener(port, process: m, log: dir + "/error.log")
        } catch {
            stop()
            throw error
        }
    }

    /// The requests nginx answered (its access log).
    func accessLog() -> String { Support.read(dir + "/access.log") }

    func challengeFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: challengeDir)) ?? []).sorted()
    }

    func stop() {
        if let master {
            master.signal(SIGTERM)   // a SIGKILLed master would leave its worker behind
            if master.wait(5) == nil { master.stop() }
        }
        try? FileManager.default.removeItem(atPath: dir)
    }
}

enum TestDirs {
    /// A fresh directory under /tmp, mode 0755 (nginx's workers must traverse it).
    static func make(_ prefix: String) throws -> String {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw DesaError.system("mkdtemp: \(String(cString: strerror(errno)))") }
        let path = String(cString: p)
        chmod(path, 0o755)
        return path
    }
}

enum TestPEM {
    /// The PEM blocks of `text`, each with its BEGIN and END lines and a final newline.
    static func blocks(_ text: String) -> [String] {
        var out: [String] = [], current: [Substring]? = nil
        for line in text.split(separator: "\n") {
            if line.hasPrefix("-----BEGIN ") { current = [line] } else if current != nil { current!.append(line) }
            if line.hasPrefix("-----END "), let c = current { out.append(c.joined(separator: "\n") + "\n"); current = nil }
        }
        return out
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; fails early with
/// the log when the process ended.
func waitForListener(_ port: Int, process: Spawned, log: String, seconds: Double = 10) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let status = process.exitStatus {
            throw DesaError.system("the process for port \(port) exited with \(status): \(Support.read(log).suffix(2000))")
        }
        if tcpAccepts(port) { return }
        usleep(20_000)
    }
    throw DesaError.system("nothing listens on 127.0.0.1:\(port) after \(Int(seconds)) s: \(Support.read(log).suffix(2000))")
}

func tcpAccepts(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
