import Foundation
import Testing
@testable import Provisioner

/// The regency's wildcard through DNS-01: `cert issue` with `tls.dns = "rfc2136"` against a
/// real BIND (BindHarness) that pebble also asks.
@Suite("DNS-01: one wildcard for the regency through its own BIND", .serialized)
struct DNSWildcardTests {
    @Test("one wildcard certificate through DNS-01 at a real BIND serves all 280 villages; the TXT records are gone afterwards")
    func wildcardForTheRegency() async throws {
        let bind = try BindHarness(port: UInt16(SandboxHarness.freePort()))
        defer { bind.stop() }
        let h = try SandboxHarness("dns01")
        defer { h.destroy() }
        let pebble = try await PebbleHarness.start(basePort: 14800, httpPort: h.port, options: .init(dnsServer: bind.server))
        defer { pebble.stop() }
        // Everything below blocks (desactl, curl): on a thread of its own, not on one of the
        // two cooperative threads the other suites share.
        let directory = pebble.directoryURL, listener = pebble.listenerCert, root = pebble.rootCert
        let check = try await BlockingThread.run("dns01-test") { () throws -> [String] in
            var problems: [String] = []
            // nginx binds the HTTPS port at the import's reload: a port another process took
            // since it was chosen fails that reload ("Address already in use"), and the
            // import is run again on another port (this machine is shared).
            var imported = ProcessResult(status: 1, stdout: "", stderr: "not run")
            var https = 0
            for attempt in 1...4 {
                https = SandboxHarness.freePort()
                // The sandbox's own [tls] keys, rewritten in its file (encoding the whole Config would
                // also write sections other suites register for themselves).
                let settings = ["enabled": "true", "directory": "\"\(directory)\"", "trusted_roots": "[\"\(listener)\"]",
                                "listen": "\"127.0.0.1:\(https)\"", "dns": "\"rfc2136\"", "dns_server": "\"\(bind.server)\"",
                                "tsig_key_file": "\"\(bind.keyPath)\""]
                var section = ""
                let lines = (AtomicFiles.read(h.configPath) ?? "").split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
                    if line.hasPrefix("[") { section = String(line) }
                    guard section == "[tls]", let eq = line.firstIndex(of: "=") else { return String(line) }
                    let key = line[..<eq].trimmingCharacters(in: .whitespaces)
                    return settings[key].map { "\(key) = \($0)" } ?? String(line)
                }
                try AtomicFiles.write([FileWrite(path: h.configPath, content: lines.joined(separator: "\n"), mode: 0o600)])
                imported = try h.desactl("tenant", "import", Support.bandung)
                if imported.ok || attempt == 4 || !(imported.stdout + imported.stderr).contains("Address already in use") { break }
            }
            let c = try h.config()
            if !(c.tls.dns == .rfc2136 && c.tls.enabled) { problems.append("the [tls] settings did not take") }
            guard imported.ok else { return ["import: \(imported.stdout.suffix(1500)) \(imported.stderr.suffix(1500))"] }
            let issued = try h.desactl("cert", "issue", "--all", "--json")
            guard issued.ok else { return ["cert issue: \(issued.stdout.suffix(2000)) \(issued.stderr)"] }
            let report = try JSONSerialization.jsonObject(with: Data(issued.stdout.utf8)) as? [String: Any] ?? [:]
            let orders = report["issued"] as? [[String: Any]] ?? []
            if !(orders.count == 1 && orders.first?["id"] as? String == "wildcard") { problems.append("orders: \(orders)") }
            guard let chain = try FileManager.default.subpathsOfDirectory(atPath: c.certDir + "/wildcard").first(where: { $0.hasSuffix("fullchain.pem") }) else {
                return problems + ["no wildcard certificate on disk"]
            }
            if !(try pebble.verify(chainPEM: AtomicFiles.read(c.certDir + "/wildcard/" + chain) ?? "").ok) { problems.append("openssl verify refused the chain") }
            // Every village over HTTPS with it, in one curl run.
            let tenants = try h.tenants()
            if tenants.count != 280 { problems.append("\(tenants.count) tenants") }
            var cfg = ""
            for t in tenants {
                let d = t["domain"] as! String
                cfg += "resolve = \"\(d):\(https):127.0.0.1\"\nurl = \"https://\(d):\(https)/\"\noutput = \"/dev/null\"\n"
            }
            try cfg.write(toFile: h.dir + "/curl.cfg", atomically: true, encoding: .utf8)
            let curl = try h.runner.run(["/usr/bin/curl", "-sS", "--cacert", root, "-K", h.dir + "/curl.cfg", "-w", "%{http_code}\n"])
            let ok = curl.stdout.split(separator: "\n").filter { $0 == "200" }.count
            if ok != 280 { problems.append("\(ok) of 280 answer 200 over HTTPS: \(curl.stderr.prefix(500))") }
            if !(try bind.dig("_acme-challenge.bandungkab.go.id", "TXT").isEmpty) { problems.append("the challenge's TXT record was left behind") }

            return problems
        }
        #expect(check.isEmpty, "\(check)")
    }
}
