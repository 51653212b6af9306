import Foundation
@testable import Provisioner

/// A real BIND (`named` from Debian's bind9) on 127.0.0.1:`port`, UDP and TCP, in a temp
/// dir of its own: a TSIG key made by `tsig-keygen -a hmac-sha256 desa-acme`, and zones
/// (`bandungkab.go.id` and `desa.id` by default) that the key may update, each with SOA, NS,
/// `@ A 127.0.0.1` and `* A 127.0.0.1`, so any village name resolves to loopback (pebble's
/// `-dnsserver` can point here). Runs as `named -f -u root`, logging to `<dir>/named.log`;
/// no rndc control channel, no recursion. Call `stop()` at the end.
final class BindHarness: @unchecked Sendable {
    static let defaultZones = ["bandungkab.go.id", "desa.id"]

    let dir: String
    let port: UInt16
    let zones: [String]
    /// The key file as tsig-keygen wrote it, mode 0600.
    let keyPath: String
    let key: TSIGKey
    /// `127.0.0.1:<port>`, for `DNSUpdateClient(server:)` and pebble's `-dnsserver`.
    var server: String { "127.0.0.1:\(port)" }
    var log: String { Support.read(dir + "/named.log") }

    private let process: Spawned
    private let runner = SystemProcessRunner()

    /// Starts named and returns once it answers an SOA query for every zone (10 s at most).
    init(port: UInt16, zones: [String] = BindHarness.defaultZones, keyName: String = "desa-acme") throws {
        self.port = port
        self.zones = zones
        var template = Array("/tmp/desa-bind-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw DesaError.system("mkdtemp: \(String(cString: strerror(errno)))") }
        dir = String(cString: made)
        keyPath = dir + "/\(keyName).key"

        let keygen = try runner.run(["/usr/sbin/tsig-keygen", "-a", "hmac-sha256", keyName])
        guard keygen.ok else { throw DesaError.system("tsig-keygen failed: \(keygen.message)") }
        var files = [FileWrite(path: keyPath, content: keygen.stdout, mode: 0o600),
                     FileWrite(path: dir + "/named.conf", content: Self.config(dir: dir, port: port, zones: zones, keyPath: keyPath, keyName: keyName), mode: 0o644)]
        for zone in zones {
            files.append(FileWrite(path: dir + "/\(zone).zone", content: Self.zoneFile(zone), mode: 0o644))
        }
        try AtomicFiles.write(files)
        key = try TSIGKey.load(path: keyPath)

        let check = try runner.run(["/usr/bin/named-checkconf", "-z", dir + "/named.conf"])
        guard check.ok else { throw DesaError.system("named-checkconf: \(check.message)") }
        process = try Spawned(["/usr/sbin/named", "-f", "-u", "root", "-c", dir + "/named.conf"],
                              environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        do {
            try waitUntilServing()
        } catch {
            stop()
            throw error
        }
    }

    private func waitUntilServing() throws {
        let deadline = Date().addingTimeInterval(10)
        var pending = zones
        while !pending.isEmpty {
            if let status = process.exitStatus {
                throw DesaError.system("named exited with status \(status) before serving; its log:\n\(log)")
            }
            guard Date() < deadline else {
                throw DesaError.system("named did not answer for \(pending.joined(separator: ", ")) within 10 s; its log:\n\(log)")
            }
            if let lines = try? dig(pending[0], "SOA"), !lines.isEmpty {
                pending.removeFirst()
            } else {
                usleep(50_000)
            }
        }
    }

    /// SIGTERM, then SIGKILL after 5 s; reaps named and removes the temp dir.
    func stop() {
        if process.isRunning {
            process.signal(SIGTERM)
            if process.wait(5) == nil { process.stop() }
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// `dig +short` against this server: one line per record.
    func dig(_ name: String, _ type: String) throws -> [String] {
        let r = try runner.run(["/usr/bin/dig", "@127.0.0.1", "-p", String(port), "+short", "+norecurse",
                                "+time=1", "+tries=1", type, name])
        guard r.ok else { throw DesaError.system("dig \(type) \(name): \(r.message)") }
        return r.stdout.split(separator: "\n").map(String.init)
    }

    /// The TXT values dig sees at `name` (quotes removed, strings of one record joined).
    func txt(_ name: String) throws -> [String] {
        try dig(name, "TXT").map { line in
            line.split(separator: "\" \"").joined().replacingOccurrences(of: "\"", with: "")
        }.sorted()
    }

    /// Runs BIND's own `nsupdate -k <key file>` with these commands (no shell, a file).
    func nsupdate(_ commands: [String]) throws -> ProcessResult {
        let path = dir + "/nsupdate-\(UInt32.random(in: 0...UInt32.max)).txt"
        let text = (["server 127.0.0.1 \(port)"] + commands + ["send", ""]).joined(separator: "\n")
        try AtomicFiles.write([FileWrite(path: path, content: text, mode: 0o600)])
        return try runner.run(["/usr/bin/nsupdate", "-t", "3", "-k", keyPath, path])
    }

    static func config(dir: String, port: UInt16, zones: [String], keyPath: String, keyName: String) -> String {
        var text = """
        include "\(keyPath)";
        options {
            directory "\(dir)";
            listen-on port \(port) { 127.0.0.1; };
            listen-on-v6 { none; };
            recursion no;
            dnssec-validation no;
            notify no;
            pid-file "\(dir)/named.pid";
            session-keyfile "\(dir)/session.key";
            managed-keys-directory "\(dir)";
        };
        controls { };
        logging {
            channel file { file "\(dir)/named.log"; severity info; print-time yes; print-category yes; };
            category default { file; };
            category update { file; };
            category security { file; };
        };

        """
        for zone in zones {
            text += """
            zone "\(zone)" {
                type primary;
                file "\(dir)/\(zone).zone";
                allow-update { key "\(keyName)"; };
            };

            """
        }
        return text
    }

    static func zoneFile(_ zone: String) -> String {
        """
        $TTL 60
        @   IN SOA ns1.\(zone). hostmaster.\(zone). 1 60 60 600 60
        @   IN NS  ns1.\(zone).
        @   IN A   127.0.0.1
        ns1 IN A   127.0.0.1
        *   IN A   127.0.0.1

        """
    }
}
