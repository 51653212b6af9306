import Foundation
import Testing
@testable import Provisioner

/// A real BIND (`named`) on loopback, authoritative for the regency's zone (every name
/// resolving to 127.0.0.1), accepting TXT updates signed with a key `tsig-keygen` made.
final class BindHarness {
    let dir: String
    let port: Int
    let keyFile: String
    let zone: String
    private let named: Spawned
    let runner = SystemProcessRunner()

    init(zone: String = "bandungkab.go.id") throws {
        self.zone = zone
        dir = try TestDirs.make("desa-bind")
        port = SandboxHarness.freePort()
        keyFile = dir + "/desa-acme.key"
        let key = try runner.run(["/usr/sbin/tsig-keygen", "-a", "hmac-sha256", "desa-acme"])
        try #require(key.ok, "tsig-keygen: \(key.message)")
        try AtomicFiles.write([FileWrite(path: keyFile, content: key.stdout, mode: 0o600)])
        try AtomicFiles.write([
            FileWrite(path: dir + "/zone.db", content: """
            $TTL 60
            @ IN SOA ns.\(zone). hostmaster.\(zone). 1 60 60 600 60
            @ IN NS ns.\(zone).
            ns IN A 127.0.0.1
            @ IN A 127.0.0.1
            * IN A 127.0.0.1

            """),
            FileWrite(path: dir + "/named.conf", content: """
            options { directory "\(dir)"; listen-on port \(port) { 127.0.0.1; }; listen-on-v6 { none; }; recursion no;
                      pid-file "\(dir)/named.pid"; session-keyfile "\(dir)/session.key"; dnssec-validation no; };
            include "\(keyFile)";
            zone "\(zone)" { type master; file "\(dir)/zone.db"; update-policy { grant desa-acme subdomain \(zone). TXT; }; };

            """),
        ])
        named = try Spawned(["/usr/sbin/named", "-g", "-c", dir + "/named.conf", "-u", "root"], environment: ["PATH": "/usr/sbin:/usr/bin"],
                            logFile: dir + "/named.log")
        let deadline = Date().addingTimeInterval(10)
        while dig("ns." + zone, "A") != ["127.0.0.1"] {
            guard Date() < deadline, named.isRunning else {
                throw DesaError.system("named did not start: \(AtomicFiles.read(dir + "/named.log")?.suffix(500) ?? "")")
            }
            usleep(50_000)
        }
    }

    var server: String { "127.0.0.1:\(port)" }

    /// `dig +short`, one answer per element.
    func dig(_ name: String, _ type: String) -> [String] {
        let r = try? runner.run(["/usr/bin/dig", "+short", "+time=1", "+tries=1", "@127.0.0.1", "-p", "\(port)", name, type])
        return (r?.stdout ?? "").split(separator: "\n").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
    }

    func key() throws -> TSIGKey { try TSIGKey.load(path: keyFile) }

    func stop() {
        named.signal(SIGTERM)
        _ = named.wait(5)
        named.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

@Suite("DNS-01 by RFC 2136 updates, against a real BIND", .serialized)
struct DNSUpdateTests {
    @Test("a TXT record is added, seen by the server, and exactly it is deleted")
    func addAndDelete() throws {
        let bind = try BindHarness()
        defer { bind.stop() }
        let c = try DNSUpdateClient(server: bind.server, key: try bind.key(), zone: bind.zone)
        let name = "_acme-challenge.cileunyi-kulon.bandungkab.go.id"
        try c.addTXT(name: name, value: "first-value-0123456789")
        try c.addTXT(name: name, value: "second-value-0123456789")
        #expect(Set(bind.dig(name, "TXT")) == ["first-value-0123456789", "second-value-0123456789"])
        #expect(Set(try c.queryTXT(name: name)) == ["first-value-0123456789", "second-value-0123456789"])
        try c.deleteTXT(name: name, value: "first-value-0123456789")
        #expect(bind.dig(name, "TXT") == ["second-value-0123456789"])
        try c.deleteTXT(name: name, value: "second-value-0123456789")
        #expect(bind.dig(name, "TXT").isEmpty)
    }

    @Test("a wrong secret, an unknown key, a readable key file, a name outside the zone: each a clear error")
    func refusals() throws {
        let bind = try BindHarness()
        defer { bind.stop() }
        var wrong = try bind.key()
        wrong.secret = Array(repeating: 7, count: 32)
        let bad = try DNSUpdateClient(server: bind.server, key: wrong, zone: bind.zone)
        #expect { try bad.addTXT(name: "_acme-challenge.x.bandungkab.go.id", value: "v") } throws: { e in
            "\(e)".contains("refused the update") && "\(e)".contains("NOTAUTH") && "\(e)".contains("BADSIG")
        }
        var unknown = try bind.key()
        unknown.name = "someone-else"
        let other = try DNSUpdateClient(server: bind.server, key: unknown, zone: bind.zone)
        #expect { try other.addTXT(name: "_acme-challenge.x.bandungkab.go.id", value: "v") } throws: { e in "\(e)".contains("BADKEY") }
        let good = try DNSUpdateClient(server: bind.server, key: try bind.key(), zone: bind.zone)
        #expect { try good.addTXT(name: "_acme-challenge.x.desa.id", value: "v") } throws: { e in "\(e)".contains("not in the zone") }
        let foreign = try DNSUpdateClient(server: bind.server, key: try bind.key(), zone: "purbalinggakab.go.id")
        #expect { try foreign.addTXT(name: "_acme-challenge.x.purbalinggakab.go.id", value: "v") } throws: { e in
            "\(e)".contains("NOTAUTH") || "\(e)".contains("REFUSED")
        }
        #expect(throws: DesaError.self) { try good.addTXT(name: "_acme-challenge.x;rm.bandungkab.go.id", value: "v") }
        let down = try DNSUpdateClient(server: "127.0.0.1:\(SandboxHarness.freePort())", key: try bind.key(), zone: bind.zone, timeout: 1)
        #expect { try down.addTXT(name: "_acme-challenge.x.bandungkab.go.id", value: "v") } throws: { e in
            "\(e)".contains("nothing answers DNS") || "\(e)".contains("no answer")
        }
        chmod(bind.keyFile, 0o644)
        #expect { _ = try TSIGKey.load(path: bind.keyFile) } throws: { e in "\(e)".contains("readable by others") }
    }

    @Test("garbage answers: too short, cut short, a loop of name pointers, a label past the end")
    func garbage() throws {
        var short = DNSReader([1, 2, 3])
        #expect(throws: DesaError.self) { _ = try short.header() }
        // A header claiming one answer, then a name that points at itself.
        var loop = DNSReader([0, 1, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 12])
        _ = try loop.header()
        #expect { _ = try loop.name() } throws: { e in "\(e)".contains("loop") }
        var past = DNSReader([0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 40, 97, 98])
        _ = try past.header()
        #expect(throws: DesaError.self) { _ = try past.name() }
        #expect(throws: DesaError.self) { _ = try TSIGKey.parse("not a key") }
        let key = try TSIGKey.parse("key \"k\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n")
        #expect(key.name == "k" && key.secret == Array("secretsecretsecretsecret".utf8))
    }

    @Test("one wildcard certificate through DNS-01 at a real BIND serves all 280 villages; the TXT records are gone afterwards")
    func wildcardForTheRegency() async throws {
        let bind = try BindHarness()
        defer { bind.stop() }
        let h = try SandboxHarness("dns01")
        defer { h.destroy() }
        let pebble = try await PebbleHarness.start(basePort: 14800, httpPort: h.port, options: .init(dnsServer: bind.server))
        defer { pebble.stop() }
        let https = SandboxHarness.freePort()
        // The sandbox's own [tls] keys, rewritten in its file (encoding the whole Config would
        // also write sections other suites register for themselves).
        let settings = ["enabled": "true", "directory": "\"\(pebble.directoryURL)\"", "trusted_roots": "[\"\(pebble.listenerCert)\"]",
                        "listen": "\"127.0.0.1:\(https)\"", "dns": "\"rfc2136\"", "dns_server": "\"\(bind.server)\"",
                        "tsig_key_file": "\"\(bind.keyFile)\""]
        var section = ""
        let lines = (AtomicFiles.read(h.configPath) ?? "").split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            if line.hasPrefix("[") { section = String(line) }
            guard section == "[tls]", let eq = line.firstIndex(of: "=") else { return String(line) }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            return settings[key].map { "\(key) = \($0)" } ?? String(line)
        }
        try AtomicFiles.write([FileWrite(path: h.configPath, content: lines.joined(separator: "\n"), mode: 0o600)])
        let c = try h.config()
        #expect(c.tls.dns == .rfc2136 && c.tls.enabled)
        let imported = try h.desactl("tenant", "import", Support.bandung)
        try #require(imported.ok, "\(imported.stdout.suffix(1500)) \(imported.stderr.suffix(1500))")
        let issued = try h.desactl("cert", "issue", "--all", "--json")
        try #require(issued.ok, "\(issued.stdout.suffix(2000)) \(issued.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(issued.stdout.utf8)) as? [String: Any] ?? [:]
        let orders = report["issued"] as? [[String: Any]] ?? []
        #expect(orders.count == 1 && orders.first?["id"] as? String == "wildcard", "\(orders)")
        let chain = try #require(FileManager.default.subpathsOfDirectory(atPath: c.certDir + "/wildcard").first { $0.hasSuffix("fullchain.pem") })
        #expect(try pebble.verify(chainPEM: AtomicFiles.read(c.certDir + "/wildcard/" + chain) ?? "").ok)
        // Every village over HTTPS with it, in one curl run.
        let tenants = try h.tenants()
        #expect(tenants.count == 280)
        var cfg = ""
        for t in tenants {
            let d = t["domain"] as! String
            cfg += "resolve = \"\(d):\(https):127.0.0.1\"\nurl = \"https://\(d):\(https)/\"\noutput = \"/dev/null\"\n"
        }
        try cfg.write(toFile: h.dir + "/curl.cfg", atomically: true, encoding: .utf8)
        let curl = try h.runner.run(["/usr/bin/curl", "-sS", "--cacert", pebble.rootCert, "-K", h.dir + "/curl.cfg", "-w", "%{http_code}\n"])
        #expect(curl.stdout.split(separator: "\n").filter { $0 == "200" }.count == 280, "\(curl.stderr.prefix(500))")
        #expect(bind.dig("_acme-challenge." + bind.zone, "TXT").isEmpty, "the challenge's TXT record was left behind")
    }
}
