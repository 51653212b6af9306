import Foundation

/// Each active tenant's PHP-FPM pool, `<pool_dir>/<user>.conf` under its PHP version,
/// running as the tenant's user on its own socket. A suspended tenant has no pool: it
/// runs no PHP at all. Verification asks the pool's socket to accept a connection.
public struct PoolsCapability: HealthChecking {
    public struct Observation: Sendable {
        /// This capability's files in every pool directory (`<user>.conf`), by path.
        public var files: [String: SeenFile]
        public var stats: [String: FileStat]
    }

    /// The path of every pool's ping page (FPM's `ping.path`): FPM answers it itself with
    /// `pingResponse`, running no PHP. The health probe asks each pool's socket for it.
    public static let pingPath = "/desa-ping"
    public static let pingResponse = "pong"

    public init() {}
    public var name: String { "pools" }
    public var healthChecks: [any TenantCheck] { [PHPCheck()] }

    public var settings: [any ConfigSection.Type] { [PHPSettings.self] }
    public func services(_ config: Config) -> [ServiceSpec] { config.php.versions.keys.sorted().map { .phpFPM($0, config) } }

    /// Each version's pool and socket directory, once (versions may share a socket directory).
    func baseDirectories(_ c: Config) -> [DirSpec] {
        var seen = Set<String>()
        return c.php.versions.keys.sorted().flatMap { v -> [DirSpec] in
            let p = c.php.versions[v]!
            return [DirSpec(path: p.poolDir, uid: 0, gid: 0, mode: 0o755), DirSpec(path: p.socketDir, uid: 0, gid: 0, mode: 0o755)]
        }.filter { seen.insert($0.path).inserted }
    }

    /// A pool's file name is a tenant user's name and `.conf`.
    static func isPoolName(_ name: String, prefix: String) -> Bool {
        let base = name.dropLast(5)
        return name.hasSuffix(".conf") && base.hasPrefix(prefix) && base.count == prefix.count + 10
            && base.dropFirst(prefix.count).allSatisfy { $0.isASCII && $0.isNumber }
    }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        let stats = host.stats(baseDirectories(d.config).map(\.path))
        let prefix = d.config.userPrefix
        let files = host.seenFiles(in: Array(Set(d.config.php.versions.values.map(\.poolDir))).sorted())
            .filter { Self.isPoolName(($0.key as NSString).lastPathComponent, prefix: prefix) }
        return Observation(files: files, stats: stats)
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        out.steps += Step.ensure(baseDirectories(d.config), nil, seen.stats)
        var files = seen.files
        for t in d.tenants where t.desired == .active {
            do {
                let php = try d.config.php.version(t.php)
                let path = php.poolDir + "/" + t.userName(prefix: d.config.userPrefix) + ".conf"
                let existing = files.removeValue(forKey: path)
                if let content = try d.renderer.pool(t, aliases: d.aliases[t.code] ?? [], unlessEqualTo: existing),
                   let s = Step.write(path, content, service: ServiceSpec.phpFPM(t.php, d.config).name, tenant: t.code, existing: existing,
                                      blame: ["[pool \(t.userName(prefix: d.config.userPrefix))]", t.home(d.config) + "/"]) {
                    out.steps.append(s)
                }
                out.probes[t.code] = [.socket(path: try t.phpSocket(d.config))]
            } catch {
                out.steps.append(.fail(t.code, Applier.message(error)))
            }
        }
        // A leftover pool belongs to the php-fpm of the directory it is in.
        for v in d.config.php.versions.keys.sorted() {
            let dir = d.config.php.versions[v]!.poolDir + "/"
            let mine = files.filter { $0.key.hasPrefix(dir) && !$0.key.dropFirst(dir.count).contains("/") }
            for k in mine.keys { files[k] = nil }
            orphanSteps(mine, service: ServiceSpec.phpFPM(v, d.config).name, known: d.known, removeUnknown: d.removeUnknown, into: &out)
        }
        return out
    }
}

extension ServiceSpec {
    /// The php-fpm master of one PHP version, as the config runs it.
    public static func phpFPM(_ version: String, _ c: Config) -> ServiceSpec {
        guard let p = c.php.versions[version] else { return ServiceSpec(name: "php\(version)-fpm", kind: .phpFPM) }
        let sandbox = c.mode == .sandbox
        // In the foreground (-F): a daemonizing master forks again at each reload (SIGUSR2),
        // so the pid desa recorded would stop naming it. With quotas, its RLIMIT_NPROC is
        // each tenant's process limit: the master (root) is exempt, its workers inherit it,
        // and the kernel counts it per UID at every fork of theirs and of their children.
        var start = [p.binary, "-F", "-y", p.mainConf]
        if c.quota.backend != .none { start = ["/usr/bin/prlimit", "--nproc=\(c.quota.processes):\(c.quota.processes)", "--"] + start }
        return ServiceSpec(name: "php\(version)-fpm", kind: .phpFPM, binary: p.binary, check: [p.binary, "-t", "-y", p.mainConf],
                           start: sandbox ? start : [], foreground: true, pidFile: p.pidFile,
                           unit: sandbox ? "" : p.service, argument: sandbox ? p.mainConf : nil, socketDir: p.socketDir)
    }
}
