import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A sandbox's own ACME CA: Let's Encrypt's test CA (`pebble`) and its DNS test server
/// (`pebble-challtestsrv`, every name resolving to 127.0.0.1) on loopback, with pebble's
/// HTTP-01 checks pointed at the sandbox's nginx. pebble makes a new root at every start;
/// `start` saves it as `DIR/pebble/root.pem` (what `curl --cacert` needs).
public enum SandboxPebble {
    public struct Ports: Sendable {
        public var acme: Int
        public var management: Int { acme + 1 }
        public var dns: Int { acme + 2 }
        public var dnsManagement: Int { acme + 3 }
    }

    static func dir(_ c: Config) -> String { (c.path as NSString).deletingLastPathComponent + "/pebble" }
    public static func rootCertificate(_ c: Config) -> String { dir(c) + "/root.pem" }
    static func listenerCertificate(_ c: Config) -> String { dir(c) + "/listener.pem" }

    /// Whether this sandbox has a pebble (written by `sandbox init --with-pebble`).
    public static func configured(_ c: Config) -> Bool {
        FileManager.default.fileExists(atPath: dir(c) + "/pebble.json")
    }

    static func ports(_ c: Config) -> Ports? {
        guard let url = URL(string: c.tls.directoryURL), let p = url.port else { return nil }
        return Ports(acme: p)
    }

    /// The settings `init` writes: the sandbox's CA, trusted for its own HTTPS, and its
    /// root (saved by each `start`), trusted for the chains nginx serves (the agent's HTTPS check).
    static func configure(_ c: inout Config, httpsPort: Int, acmePort: Int) {
        c.tls.enabled = true
        c.tls.directory = "https://127.0.0.1:\(acmePort)/dir"
        c.tls.contact = "hostmaster@" + c.domain
        c.tls.trustedRoots = [listenerCertificate(c), rootCertificate(c)]
        c.tls.listen = "127.0.0.1:\(httpsPort)"
    }

    /// pebble's listener certificate and its config, under `DIR/pebble`.
    static func initialize(_ c: Config, runner: ProcessRunning) throws {
        for bin in ["/usr/bin/pebble", "/usr/bin/pebble-challtestsrv", "/usr/bin/openssl"] where !FileManager.default.isExecutableFile(atPath: bin) {
            throw DesaError(.config, "--with-pebble needs \(bin): apt-get install pebble openssl (scripts/install-deps.sh does)")
        }
        guard let p = ports(c) else { throw DesaError.system("the sandbox's ACME directory has no port") }
        let d = dir(c)
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let r = try runner.run(["/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", d + "/listener.key", "-out", listenerCertificate(c), "-days", "3650",
                                "-subj", "/CN=desa sandbox pebble", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        guard r.ok else { throw DesaError.system("openssl could not make pebble's listener certificate: \(r.message)") }
        chmod(d + "/listener.key", 0o600)
        let config: [String: Any] = ["pebble": [
            "listenAddress": "127.0.0.1:\(p.acme)", "managementListenAddress": "127.0.0.1:\(p.management)",
            "certificate": listenerCertificate(c), "privateKey": d + "/listener.key",
            "httpPort": ProbeAddress(c.nginx.probe)?.port ?? 80, "tlsPort": c.tls.port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        ] as [String: Any]]
        let json = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try AtomicFiles.write([FileWrite(path: d + "/pebble.json", content: String(decoding: json, as: UTF8.self), mode: 0o600)])
    }

    static func commands(_ c: Config) -> [(name: String, argv: [String])] {
        guard let p = ports(c) else { return [] }
        let d = dir(c)
        return [
            // The last argument tells this sandbox's process from another's (see `start`).
            ("pebble-challtestsrv", ["/usr/bin/pebble-challtestsrv", "-dns01", "127.0.0.1:\(p.dns)", "-http01", "", "-https01", "",
                                     "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                                     "-management", "127.0.0.1:\(p.dnsManagement)"]),
            ("pebble", ["/usr/bin/env", "PEBBLE_VA_NOSLEEP=1", "/usr/bin/pebble", "-config", d + "/pebble.json",
                        "-dnsserver", "127.0.0.1:\(p.dns)"]),
        ]
    }

    static func pidFile(_ c: Config, _ name: String) -> String {
        (c.path as NSString).deletingLastPathComponent + "/run/" + name + ".pid"
    }

    static func runningPID(_ c: Config, _ name: String) -> pid_t? {
        guard let text = AtomicFiles.read(pidFile(c, name)), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
              pid > 0, Processes.isAlive(pid: pid, executable: "/usr/bin/" + name) else { return nil }
        return pid
    }

    /// Starts the DNS test server and pebble (detached, in their own session), waits for
    /// their ports, and saves this run's root.
    public static func start(_ c: Config, runner: ProcessRunning, time: TimeSource = .system) throws {
        guard configured(c), let p = ports(c) else { return }
        let logDir = c.logDir
        for (name, argv) in commands(c) where runningPID(c, name) == nil {
            let status = try runner.runDetached(["/usr/bin/setsid", "--fork"] + argv, logFile: logDir + "/\(name).log")
            guard status == 0 else { throw DesaError.system("\(name) did not start (exit \(status)); see \(logDir)/\(name).log") }
            let deadline = time.deadline(10)
            var pid: pid_t?
            while pid == nil && time.now() < deadline {
                pid = Processes.find(executable: "/usr/bin/" + name, argument: argv.last!)
                if pid == nil { time.sleep(0.05) }
            }
            guard let pid else { throw DesaError.system("\(name) did not start; see \(logDir)/\(name).log") }
            try AtomicFiles.write([FileWrite(path: pidFile(c, name), content: "\(pid)\n")])
        }
        for port in [p.dnsManagement, p.acme, p.management] {
            let deadline = time.deadline(15)
            while !Processes.listensOnLoopback(port: port) {
                if time.now() > deadline { throw DesaError.system("nothing listens on 127.0.0.1:\(port); see \(logDir)/pebble.log") }
                time.sleep(0.05)
            }
        }
        let root = try runner.run(["/usr/bin/curl", "-sS", "--fail", "--cacert", listenerCertificate(c),
                                   "https://127.0.0.1:\(p.management)/roots/0", "-o", rootCertificate(c)])
        guard root.ok else { throw DesaError.system("cannot fetch pebble's root: \(root.message)") }
    }

    /// Both at once: each takes 1.5–2 s to shut down gracefully.
    public static func stop(_ c: Config, time: TimeSource = .system) {
        let running = ["pebble", "pebble-challtestsrv"].compactMap { name in runningPID(c, name).map { (name, $0) } }
        for (_, pid) in running { kill(pid, SIGTERM) }
        let deadline = time.deadline(5)
        while running.contains(where: { kill($0.1, 0) == 0 }) && time.now() < deadline { time.sleep(0.02) }
        for (name, pid) in running {
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
            unlink(pidFile(c, name))
        }
    }
}
