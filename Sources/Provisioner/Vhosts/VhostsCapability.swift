import Foundation

/// Each tenant's nginx server block, `<sites_dir>/<slug>.conf`, rendered from its site
/// template (the suspended page while it is suspended), and the shared ACME challenge
/// directory every vhost serves. Verification asks nginx for the tenant's name.
public struct VhostsCapability: HealthChecking {
    public struct Observation: Sendable {
        public var stats: [String: FileStat]
        /// This capability's files in the sites directory (`<slug>.conf`), by path.
        public var files: [String: SeenFile]
    }

    public init() {}
    public var name: String { "vhosts" }
    public var healthChecks: [any TenantCheck] { [HTTPCheck(), HTTPSCheck()] }

    public var settings: [any ConfigSection.Type] { [NginxSettings.self] }
    public func services(_ config: Config) -> [ServiceSpec] { [.nginx(config)] }

    func baseDirectories(_ c: Config) -> [DirSpec] {
        // nginx's workers must pass through the state directory to the challenges kept in
        // it; they cannot list it, and everything in it is root's and closed.
        (c.acmeRoot.hasPrefix(c.stateDir + "/") ? [DirSpec(path: c.stateDir, uid: 0, gid: 0, mode: 0o711)] : []) + [
            DirSpec(path: c.acmeRoot, uid: 0, gid: 0, mode: 0o755),
            DirSpec(path: c.acmeRoot + "/.well-known", uid: 0, gid: 0, mode: 0o755),
            DirSpec(path: c.acmeRoot + "/.well-known/acme-challenge", uid: 0, gid: 0, mode: 0o755),
            DirSpec(path: c.nginx.sitesDir, uid: 0, gid: 0, mode: 0o755),
        ]
    }

    /// A vhost's file name is a slug and `.conf`; other files there are someone else's.
    static func isVhostName(_ name: String) -> Bool {
        name.hasSuffix(".conf") && !name.hasPrefix("-")
            && name.dropLast(5).allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") } && name.count > 5
    }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        let stats = host.stats(baseDirectories(d.config).map(\.path))
        let files = host.seenFiles(in: [d.config.nginx.sitesDir]).filter { Self.isVhostName(($0.key as NSString).lastPathComponent) }
        return Observation(stats: stats, files: files)
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        out.steps += Step.ensure(baseDirectories(d.config), nil, seen.stats)
        var files = seen.files
        let nginx = ServiceSpec.nginx(d.config).name
        let tls = d.state(of: CertificatesCapability.self)?.serving ?? [:]
        for t in d.tenants where t.desired != .deleted {
            let path = d.config.nginx.sitesDir + "/" + t.slug + ".conf"
            let existing = files.removeValue(forKey: path)
            do {
                if let content = try d.renderer.vhost(t, aliases: d.aliases[t.code] ?? [], tls: tls[t.code] ?? [], unlessEqualTo: existing),
                   let s = Step.write(path, content, service: nginx, tenant: t.code, existing: existing, blame: [t.home(d.config) + "/"]) {
                    out.steps.append(s)
                }
            } catch {
                out.steps.append(.fail(t.code, Applier.message(error)))
            }
            out.probes[t.code] = [.http(host: t.primaryDomain(d.config), address: d.config.nginx.probe, expect: t.convergedStatus)]
        }
        orphanSteps(files, service: nginx, known: d.known, removeUnknown: d.removeUnknown, into: &out)
        return out
    }
}

extension ServiceSpec {
    /// nginx as the config runs it.
    public static func nginx(_ c: Config) -> ServiceSpec {
        var base = [c.nginx.binary]
        if let p = c.nginx.prefix { base += ["-p", p] }
        base += ["-c", c.nginx.mainConf]
        let sandbox = c.mode == .sandbox
        // HTTPS is not listed: nginx binds it only once a certificate serves, and a sandbox
        // checks it with every other port at `sandbox start`.
        return ServiceSpec(name: "nginx", kind: .nginx, binary: c.nginx.binary, check: base + ["-t", "-q"], start: sandbox ? base : [],
                           pidFile: c.nginx.pidFile, unit: sandbox ? "" : c.nginx.service, argument: sandbox ? c.nginx.mainConf : nil,
                           listens: sandbox ? [c.nginx.probe] : [], errorLog: c.nginx.errorLogFile)
    }
}
