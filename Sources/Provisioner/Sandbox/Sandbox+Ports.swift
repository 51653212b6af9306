import Foundation

/// The ports a sandbox serves on, checked before `init` and `start` do anything.
extension Sandbox {
    /// A port a sandbox serves on (all on 127.0.0.1), and the option of `sandbox init` that chose it.
    struct Port {
        var port: Int
        var what: String
        var option: String
        /// pebble-challtestsrv answers DNS over UDP too.
        var udp = false
    }

    static func ports(_ c: Config, pebble: Bool) -> [Port] {
        var out: [Port] = []
        if let a = ProbeAddress(c.nginx.listen) { out.append(Port(port: Int(a.port), what: "HTTP", option: "--http-port")) }
        if c.tls.enabled { out.append(Port(port: c.tls.port, what: "HTTPS", option: "--https-port")) }
        if pebble, let p = SandboxPebble.ports(c) {
            out += [Port(port: p.acme, what: "pebble's ACME", option: "--pebble-port"),
                    Port(port: p.management, what: "pebble's management", option: "--pebble-port"),
                    Port(port: p.dns, what: "pebble's DNS", option: "--pebble-port", udp: true),
                    Port(port: p.dnsManagement, what: "pebble's DNS management", option: "--pebble-port")]
        }
        if c.mariadb.enabled { out.append(Port(port: c.mariadb.port, what: "MariaDB", option: "--mariadb-port")) }
        return out
    }

    /// Refuses, naming each port and the process that holds it, when a port the sandbox
    /// will serve on is taken by a process that is not the sandbox's own (`ours`). Nothing
    /// is started, stopped or ended for it: that process may be another sandbox's or the
    /// system's.
    static func checkPorts(_ c: Config, pebble: Bool, ours: Set<pid_t>, starting: Bool) throws {
        var taken: [String] = []
        for p in ports(c, pebble: pebble) {
            let use = Processes.use(port: UInt16(p.port), host: "127.0.0.1", udp: p.udp)
            let others = use.holders.filter { !ours.contains($0) }
            let by = !others.isEmpty ? " by \(Processes.describe(others))" : use.inUse && use.holders.isEmpty ? " (by no process desa can see)" : nil
            guard let by else { continue }
            let advice = starting ? "stop it, or make the sandbox again with another \(p.option)" : "choose another with \(p.option)"
            taken.append("port \(p.port) on 127.0.0.1 (\(p.what)) is in use\(by), not this sandbox's; \(advice)")
        }
        if starting && !taken.isEmpty { taken.append("nothing was started or stopped") }
        if !taken.isEmpty { throw DesaError(.conflict, taken.joined(separator: "\n")) }
    }

    /// Every process that is this sandbox's: its masters and their workers (or the workers
    /// a killed master left), its pebble.
    static func ownedProcesses(_ c: Config, _ s: ServiceControl) -> Set<pid_t> {
        var specs = [ServiceSpec.nginx(c)] + c.php.versions.keys.map { ServiceSpec.phpFPM($0, c) }
        if c.mariadb.enabled { specs.append(.mariadb(c)) }
        return specs.reduce(into: SandboxPebble.ownedProcesses(c)) { $0.formUnion(s.ownedProcesses($1)) }
    }
}
