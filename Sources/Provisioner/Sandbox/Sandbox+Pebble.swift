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
            ("pebble-challtestsrv", ["/usr/bin/pebble-challtestsrv", "-dns01", "127.0.0.1:\(p.dns)", "-http01", "", "-https01", "",
                                     "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                                     "-management", "127.0.0.1:\(p.dnsManagement)"]),
            ("pebble", ["/usr/bin/env", "PEBBLE_VA_NOSLEEP=1", "/usr/bin/pebble", "-config", d + "/pebble.json",
                        "-dnsserver", "127.0.0.1:\(p.dns)"]),
        ]
    }

    /// What ties a process to this sandbox besides its record: pebble's command line names
    /// its config; pebble-challtestsrv's names only ports (another sandbox's may name the
    /// same), so both run in `DIR/pebble`, and that is recorded too.
    static func identity(_ c: Config, _ name: String) -> (executable: String, argument: String?, cwd: String) {
        ("/usr/bin/" + name, name == "pebble" ? dir(c) + "/pebble.json" : nil, dir(c))
    }

    static func pidFile(_ c: Config, _ name: String) -> String {
        (c.path as NSString).deletingLastPathComponent + "/run/" + name + ".pid"
    }

    static func recordFile(_ c: Config, _ name: String) -> String {
        (c.path as NSString).deletingLastPathComponent + "/run/" + name + ".started.json"
    }

    /// This sandbox's process of `name`, as recorded when it started; never one found by its
    /// name or its ports (another sandbox's pebble may use the same). A pebble started by a
    /// desactl that kept no record counts if its command line names this sandbox's config;
    /// such a pebble-challtestsrv cannot be told from another sandbox's, so it never counts.
    static func running(_ c: Config, _ name: String) -> StartedProcess? {
        if let r = StartedProcess.read(recordFile(c, name)) { return r.isRunning ? r : nil }
        let id = identity(c, name)
        guard let argument = id.argument, let pid = ServiceControl.pidFileValue(pidFile(c, name)) else { return nil }
        return StartedProcess.capture(pid: pid, executable: id.executable, argument: argument)
    }

    static func runningPID(_ c: Config, _ name: String) -> pid_t? { running(c, name)?.pid }

    /// The processes of this sandbox's pebble and DNS test server that run.
    static func ownedProcesses(_ c: Config) -> Set<pid_t> {
        Set(["pebble", "pebble-challtestsrv"].compactMap { runningPID(c, $0) })
    }

    /// Starts the DNS test server and pebble (each in its own session), waits for their
    /// ports, and saves this run's root.
    public static func start(_ c: Config, runner: ProcessRunning, time: TimeSource = .system) throws {
        guard configured(c), let p = ports(c) else { return }
        let logDir = c.logDir
        for (name, argv) in commands(c) where runningPID(c, name) == nil {
            let id = identity(c, name)
            let r = try StartedProcess.launch(argv, executable: id.executable, argument: id.argument, cwd: id.cwd, name: name,
                                              logFile: logDir + "/\(name).log", record: recordFile(c, name), runner: runner, time: time)
            try AtomicFiles.write([FileWrite(path: pidFile(c, name), content: "\(r.pid)\n")])
        }
        // Up once its own process listens: another process on the port would not do.
        for (name, port) in [("pebble-challtestsrv", p.dnsManagement), ("pebble", p.acme), ("pebble", p.management)] {
            let deadline = time.deadline(15)
            while true {
                guard let pid = runningPID(c, name) else {
                    throw DesaError.system("\(name) exited while starting; see \(logDir)/\(name).log")
                }
                if Processes.use(port: UInt16(port), host: "127.0.0.1").holders.contains(pid) { break }
                if time.now() > deadline { throw DesaError.system("\(name) does not listen on 127.0.0.1:\(port); see \(logDir)/\(name).log") }
                time.sleep(0.05)
            }
        }
        let root = try runner.run(["/usr/bin/curl", "-sS", "--fail", "--cacert", listenerCertificate(c),
                                   "https://127.0.0.1:\(p.management)/roots/0", "-o", rootCertificate(c)])
        guard root.ok else { throw DesaError.system("cannot fetch pebble's root: \(root.message)") }
    }

    /// Both at once: each takes 1.5–2 s to shut down gracefully. Only the processes this
    /// sandbox recorded.
    public static func stop(_ c: Config, time: TimeSource = .system) {
        let names = ["pebble", "pebble-challtestsrv"]
        let ours = names.compactMap { running(c, $0) }
        for r in ours { kill(r.pid, SIGTERM) }
        var deadline = time.deadline(5)
        while ours.contains(where: { $0.isRunning }) && time.now() < deadline { time.sleep(0.02) }
        for r in ours where r.isRunning { kill(r.pid, SIGKILL) }
        deadline = time.deadline(2)
        while ours.contains(where: { $0.isRunning }) && time.now() < deadline { time.sleep(0.01) }
        for r in ours { _ = Processes.reap(r.pid) }
        for name in names {
            unlink(pidFile(c, name))
            unlink(recordFile(c, name))
        }
    }
}
