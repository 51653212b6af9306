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
        public var sharedLeft: [String: [String: SeenFile]] = [:]
        /// The tenants' masters systemd knows, by unit name, with their ACTIVE state (nil
        /// when systemd could not be asked).
        public var masters: [String: String]?
        /// Shared masters again (production): the files masters per tenant left behind.
        public var tenantLeft: [String] = []
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
        let root = TenantMasters.on(c) ? [c.php.tenantDir, TenantMasters.unitDir(c) + "/multi-user.target.d", "/run/desa-php"].map { DirSpec(path: $0, uid: 0, gid: 0, mode: 0o755) } : []
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
            o.masters = TenantMasters.states()
            for (v, p) in d.config.php.versions {
                let left = host.seenFiles(in: [p.poolDir]).filter { Self.isPoolName(($0.key as NSString).lastPathComponent, prefix: prefix) && $0.value.owner != nil }
                if !left.isEmpty, !p.service.isEmpty { o.sharedLeft[v] = left }
            }
        } else if d.config.mode == .production {
            // Back to one shared master: what masters per tenant left.
            o.tenantLeft = TenantMasters.leftovers(d.config, prefix: prefix)
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
        if !seen.tenantLeft.isEmpty {
            // After the shared master serves the pools again (files phase): the tenants' own
            // masters stop, and their files go.
            out.steps.append(Step(nil, "leave-tenant-masters", .verify, .custom(LeaveTenantMasters(paths: seen.tenantLeft))))
        }
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
            if let existing, !TenantMasters.isOurs(existing) {
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
        // A master that is down while its pool stands (stopped by hand, out of restarts) is
        // started again; one running for no active tenant's pool is stopped. Pools written by
        // this plan start or stop their masters themselves.
        if let masters = seen.masters {
            let written = Set(out.steps.compactMap { s -> String? in
                if case .managed(let m) = s.effect, m.path.hasSuffix(".conf") { return m.path }
                return nil
            })
            var wanted = Set<String>()
            for t in d.tenants where t.desired == .active {
                guard let pool = try? c.phpPool(t.php) else { continue }
                let user = t.userName(prefix: c.userPrefix), unit = TenantMasters.unit(t.php, user: user)
                wanted.insert(unit)
                let path = pool.poolDir + "/" + user + ".conf"
                if seen.files[path] != nil, !written.contains(path), masters[unit] != "active" {
                    out.steps.append(Step(t.code, "start-master", .verify, .custom(TenantMasterControl(unit: unit, start: true))))
                }
            }
            for (unit, state) in masters.sorted(by: { $0.key < $1.key }) where !wanted.contains(unit) && state == "active" {
                out.steps.append(Step(nil, "stop-master", .verify, .custom(TenantMasterControl(unit: unit, start: false))))
            }
        }
        // After the files phase (its new masters started, nginx on their sockets): each
        // tenant's old pool leaves the shared master, unless that tenant failed; then the
        // shared master reloads once. A tenant that failed keeps being served by it.
        let active = Set(d.tenants.filter { $0.desired == .active }.map(\.code))
        for (v, files) in seen.sharedLeft.sorted(by: { $0.key < $1.key }) {
            for (path, file) in files.sorted(by: { $0.key < $1.key }) {
                let owner = file.owner.flatMap { active.contains($0) ? $0 : nil }
                out.steps.append(Step(owner, "leave-shared-master", .verify, .custom(LeaveSharedMaster(path: path, unit: nil))))
            }
            out.steps.append(Step(nil, "reload-shared-master", .verify, .custom(LeaveSharedMaster(path: nil, unit: c.php.versions[v]!.service))))
        }
    }
}

/// Back from masters per tenant to one shared master: every tenant master of desa's
/// stopped, then its pools, boot drop-ins and limits removed, and systemd told.
struct LeaveTenantMasters: CustomEffect {
    var paths: [String]
    var subject: String { "the tenants' own masters stopped; \(paths.count) of their files removed" }

    func run(_ context: ApplyContext) throws {
        let units = (TenantMasters.states(runner: context.runner) ?? [:]).filter { $0.value == "active" }.keys.sorted()
        if !units.isEmpty {
            let r = try context.runner.run(["/usr/bin/systemctl", "stop"] + units)
            guard r.ok else { throw DesaError.system("systemctl stop \(units.joined(separator: " ")) failed: \(r.message)") }
        }
        AtomicFiles.remove(paths)
        _ = try context.runner.run(["/usr/bin/systemctl", "daemon-reload"])
    }
}

/// A tenant's master started again (its failures forgotten first), or stopped.
struct TenantMasterControl: CustomEffect {
    var unit: String
    var start: Bool
    var subject: String { "\(unit): \(start ? "started again" : "stopped: no active tenant's pool")" }

    func run(_ context: ApplyContext) throws {
        for argv in start ? [["/usr/bin/systemctl", "reset-failed", unit], ["/usr/bin/systemctl", "start", unit]] : [["/usr/bin/systemctl", "stop", unit]] {
            let r = try context.runner.run(argv)
            guard r.ok || argv[1] == "reset-failed" else { throw DesaError.system("\(argv.joined(separator: " ")) failed: \(r.message)") }
        }
    }
}

/// Switching to masters per tenant: a tenant's pool taken out of the shared master's
/// directory (`path`), or, once they all are, that master reloaded (`unit`).
struct LeaveSharedMaster: CustomEffect {
    var path: String?
    var unit: String?
    var subject: String { path.map { "\($0): now served by its tenant's own master" } ?? "\(unit ?? ""): reloaded without desa's pools" }

    func run(_ context: ApplyContext) throws {
        if let path { AtomicFiles.remove([path]) }
        if let unit {
            let r = try context.runner.run(["/usr/bin/systemctl", "reload-or-restart", unit])
            guard r.ok else { throw DesaError.system("systemctl reload-or-restart \(unit) failed: \(r.message)") }
        }
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
