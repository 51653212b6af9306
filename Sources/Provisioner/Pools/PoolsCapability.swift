import Foundation

/// Each active tenant's PHP-FPM pool, `<pool_dir>/<user>.conf` under its PHP version,
/// running as the tenant's user on its own socket. A suspended tenant has no pool: it
/// runs no PHP at all. Verification asks the pool's socket to accept a connection.
public struct PoolsCapability: HealthChecking {
    public struct Observation: Sendable {
        /// This capability's files in every pool directory (`<user>.conf`), by path.
        public var files: [String: SeenFile]
        public var stats: [String: FileStat]
        /// With masters per tenant: their server files and boot drop-ins, by path, and desa's
        /// pools left in the shared masters' directories (from before the switch).
        public var servers: [String: String] = [:]
        public var wants: [String: SeenFile] = [:]
        public var sharedLeft: [String: [String]] = [:]
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
        let root = TenantMasters.on(c) ? [c.php.tenantDir, TenantMasters.unitDir(c) + "/multi-user.target.d"].map { DirSpec(path: $0, uid: 0, gid: 0, mode: 0o755) } : []
        return (root + c.php.versions.keys.sorted().flatMap { v -> [DirSpec] in
            let p = TenantMasters.effective(v, c.php.versions[v]!, c)
            let own = TenantMasters.on(c) ? [DirSpec(path: TenantMasters.dir(v, c), uid: 0, gid: 0, mode: 0o755)] : []
            return own + [DirSpec(path: p.poolDir, uid: 0, gid: 0, mode: 0o755), DirSpec(path: p.socketDir, uid: 0, gid: 0, mode: 0o755)]
        }).filter { seen.insert($0.path).inserted }
    }

    /// The pool directories in use: each version's, as the pools use it.
    static func poolDirs(_ c: Config) -> [String] {
        Array(Set(c.php.versions.map { TenantMasters.effective($0.key, $0.value, c).poolDir })).sorted()
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
        let files = host.seenFiles(in: Self.poolDirs(d.config))
            .filter { Self.isPoolName(($0.key as NSString).lastPathComponent, prefix: prefix) }
        var o = Observation(files: files, stats: stats)
        if TenantMasters.on(d.config) {
            for f in TenantMasters.serverFiles(d.config) { o.servers[f.path] = host.read(f.path) }
            let dir = TenantMasters.unitDir(d.config) + "/multi-user.target.d"
            o.wants = host.seenFiles(in: [dir]).filter { ($0.key as NSString).lastPathComponent.hasPrefix("desa-php-") }
            for (v, p) in d.config.php.versions {
                let left = host.seenFiles(in: [p.poolDir]).filter { Self.isPoolName(($0.key as NSString).lastPathComponent, prefix: prefix) && $0.value.owner != nil }
                if !left.isEmpty, !p.service.isEmpty { o.sharedLeft[v] = left.keys.sorted() }
            }
        }
        return o
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        out.steps += Step.ensure(baseDirectories(d.config), nil, seen.stats)
        var files = seen.files
        for t in d.tenants where t.desired == .active {
            do {
                let php = try d.config.phpPool(t.php)
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
        if TenantMasters.on(d.config) { try planTenantMasters(d, seen, into: &out) }
        // A leftover pool belongs to the php-fpm of the directory it is in.
        for v in d.config.php.versions.keys.sorted() {
            let dir = TenantMasters.effective(v, d.config.php.versions[v]!, d.config).poolDir + "/"
            let mine = files.filter { $0.key.hasPrefix(dir) && !$0.key.dropFirst(dir.count).contains("/") }
            for k in mine.keys { files[k] = nil }
            orphanSteps(mine, service: ServiceSpec.phpFPM(v, d.config).name, known: d.known, removeUnknown: d.removeUnknown, into: &out)
        }
        return out
    }
}

extension PoolsCapability {
    /// Masters per tenant: the server's files (a conflicting file of someone else's stops the
    /// plan), each active tenant's instance wanted at boot, and desa's pools left in a shared
    /// master's directory taken from it (its master reloaded), so that only the tenant's own
    /// master runs its PHP.
    func planTenantMasters(_ d: DesiredState, _ seen: Observation, into out: inout CapabilityPlan) throws {
        let c = d.config
        for f in TenantMasters.serverFiles(c) {
            let existing = seen.servers[f.path] ?? nil
            if let existing, !existing.hasPrefix(TenantMasters.header) && !existing.hasPrefix(TenantMasters.header.replacingOccurrences(of: "#", with: ";")) {
                throw DesaError(.conflict, "\(f.path) exists and is not desa's; move it away, or set php.masters = \"shared\"")
            }
            if existing != f.content {
                out.steps.append(Step(nil, existing == nil ? "create-config" : "update-config", .files,
                                      .managed(ManagedFile(path: f.path, content: f.content, service: f.service))))
            }
        }
        var wants = seen.wants
        let systemd = ServiceSpec.systemd(c).name
        for t in d.tenants where t.desired == .active {
            let path = TenantMasters.wantsPath(t, c)
            if let s = Step.write(path, TenantMasters.wants(t, c), service: systemd, tenant: t.code, existing: wants.removeValue(forKey: path)) {
                out.steps.append(s)
            }
        }
        orphanSteps(wants, service: systemd, known: d.known, removeUnknown: d.removeUnknown, into: &out)
        for (v, paths) in seen.sharedLeft.sorted(by: { $0.key < $1.key }) {
            out.steps.append(Step(nil, "leave-shared-master", .files, .custom(LeaveSharedMaster(paths: paths, unit: c.php.versions[v]!.service))))
        }
    }
}

/// desa's pools taken out of a shared master's pool directory, and that master reloaded:
/// the tenants' own masters serve them now (on sockets of their own, so both never hold one).
struct LeaveSharedMaster: CustomEffect {
    var paths: [String]
    var unit: String
    var subject: String { "\(paths.count) pools moved out of \(unit) to their tenants' own masters" }

    func run(_ context: ApplyContext) throws {
        AtomicFiles.remove(paths)
        let r = try context.runner.run(["/usr/bin/systemctl", "reload-or-restart", unit])
        guard r.ok else { throw DesaError.system("systemctl reload-or-restart \(unit) failed: \(r.message)") }
    }
}

extension ServiceSpec {
    /// The php-fpm master of one PHP version, as the config runs it.
    public static func phpFPM(_ version: String, _ c: Config) -> ServiceSpec {
        guard let configured = c.php.versions[version] else { return ServiceSpec(name: "php\(version)-fpm", kind: .phpFPM) }
        let p = TenantMasters.effective(version, configured, c)
        if TenantMasters.on(c) {
            // Each tenant's master is an instance of desa's template: its pools' directory
            // names the instances to reload, start or stop.
            return ServiceSpec(name: "php\(version)-fpm", kind: .phpFPM, binary: p.binary, check: [p.binary, "-t", "-y", p.mainConf],
                               foreground: true, unit: p.service, socketDir: p.socketDir, instances: p.poolDir)
        }
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
