import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// Each village's share of the server: one quota for its files and its database together
/// (`[quota]`, per tenant by `--quota` and `desactl quota set`), and a limit on its
/// processes. Files are held by a backend (`quota.backend`): a filesystem image per tenant
/// (`ImageBackend`) or the kernel's user quotas. The database counts against the same
/// quota: measured from MariaDB, it loses its write privileges while files and database
/// together are over (`QuotaCheck`, the agent's `quota-check` job).
public struct QuotasCapability: StatefulCapability, TenantLifecycle {
    public struct State: Sendable {
        public var rows: [String: TenantQuota] = [:]
    }

    public struct Observation: Sendable {
        var image: (dir: [String: FileStat], tenants: [String: ImageBackend.Seen])?
        /// Production's mount units and drop-ins (nil in a sandbox, or without images).
        var units: [String: SeenFile]?
        /// Production's php-fpm services whose process limit is not yet as configured.
        var processLimits: [SetProcessLimit] = []
        var kernel: KernelBackend.Seen?
        /// Masters per tenant: desa's drop-ins holding each tenant's unit to its limits.
        var limits: [String: SeenFile]?
        /// The directories of systemd drop-ins this plan may write into that do not exist.
        var missingDirs: Set<String> = []
        /// The tenants group's GID (nil until sysusers made it), and the directories to
        /// close with the permission wanted for it and the one they have (nil: no entry).
        var groupID: UInt32?
        var closed: [(path: String, want: UInt16, has: UInt16?)] = []
    }

    public init() {}
    public var name: String { "quotas" }
    public var settings: [any ConfigSection.Type] { [QuotaSettings.self] }
    public var migrations: [StateMigration] { [TenantQuota.migration, TenantQuota.limitsMigration] }

    public func load(_ db: Database, _ d: DesiredState) throws -> State {
        State(rows: try TenantQuota.byCode(db))
    }

    /// A tenant's quota: its row, else the config's defaults.
    static func quota(_ t: Tenant, rows: [String: TenantQuota], _ s: QuotaSettings) -> TenantQuota {
        rows[t.code] ?? TenantQuota(code: t.code, size: s.default, s)
    }

    public func check(_ options: TenantOptions, _ config: Config) throws {
        if let q = options.quota {
            guard q >= QuotaSettings.minimum else {
                throw DesaError.invalid("--quota \(q) is less than the smallest quota, \(QuotaSettings.minimum)")
            }
        }
    }

    /// `--quota SIZE`: the new tenant's row; without it, a tenant brought back keeps the
    /// quota it had, and a new one has the defaults (no row).
    public func created(_ t: Tenant, _ options: TenantOptions, _ db: Database, _ context: TenantChange) throws {
        guard let q = options.quota else { return }
        try TenantQuota(code: t.code, size: q, context.config.quota).save(db)
    }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        var o = Observation()
        if TenantMasters.on(d.config) {
            o.limits = TenantLimits.observe(d.config)
            o.missingDirs.formUnion(d.tenants.filter { $0.desired == .active }.map { TenantMasters.dropInDir($0, d.config) }.filter { !host.isDirectory($0) })
        }
        guard d.config.quota.backend != .none else { return o }
        switch d.config.quota.backend {
        case .image:
            o.image = ImageBackend.observe(d, host)
            if d.config.mode == .production {
                o.units = MountUnits.observe(d.config)
                if !host.isDirectory(MountUnits.wantsDir(d.config)) { o.missingDirs.insert(MountUnits.wantsDir(d.config)) }
            }
        case .kernel: o.kernel = KernelBackend.read(d.config)
        case .none: break
        }
        o.processLimits = ProcessLimit.pending(d.config, read: host.read)
        o.groupID = getgrnam(Users.tenantsGroup(prefix: d.config.userPrefix)).map { $0.pointee.gr_gid }
        let c = d.config
        // What tenants must still pass through: their homes, their logs, the database's socket.
        let needed = [c.webRoot, c.logDir] + (c.mariadb.enabled ? [c.mariadb.socket.map { ($0 as NSString).deletingLastPathComponent }].compactMap { $0 } : [])
        for dir in c.quota.closedDirs {
            for (path, want) in Self.closure(dir, needed: needed) {
                o.closed.append((path, want, o.groupID.flatMap { gid in ACL.namedGroups(path)?[gid] }))
            }
        }
        return o
    }

    /// A world-writable directory to close, and how: no permission at all, unless a path
    /// tenants need lies below it (a sandbox in /var/tmp), then passing through only
    /// (`--x`: nothing can be created or listed there), with each world-writable directory
    /// in it closed the same way.
    static func closure(_ dir: String, needed: [String]) -> [(String, UInt16)] {
        guard needed.contains(where: { $0.hasPrefix(dir + "/") }) else { return [(dir, 0)] }
        var out: [(String, UInt16)] = [(dir, 1)]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        for n in names.sorted() {
            let p = dir + "/" + n
            var st = stat()
            guard lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_mode & 0o002 != 0 else { continue }
            out += closure(p, needed: needed)
        }
        return out
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        let s = d.config.quota
        let rows = d.state(of: Self.self)?.rows ?? [:]
        if let image = seen.image {
            ImageBackend.plan(d, image, quotas: { Self.quota($0, rows: rows, s) }, into: &out)
        }
        out.steps += seen.missingDirs.sorted().map { Step(nil, "create-directory", .directories, .directory(DirSpec(path: $0, uid: 0, gid: 0, mode: 0o755))) }
        if let units = seen.units { MountUnits.plan(d, units, into: &out) }
        if let limits = seen.limits { TenantLimits.plan(d, limits, quotas: { Self.quota($0, rows: rows, s) }, into: &out) }
        out.steps += seen.processLimits.map { Step(nil, "limit-processes", .files, .custom($0)) }
        if let kernel = seen.kernel {
            KernelBackend.plan(d, kernel, quotas: { Self.quota($0, rows: rows, s) }, into: &out)
        }
        // What a tenant's programs write in the server's world-writable places would count
        // against no quota: those places are closed to every tenant (an ACL entry with no
        // permission for the group they all belong to). Their TMPDIR is their home's tmp/.
        if d.tenants.contains(where: { $0.desired != .deleted }) {
            let group = Users.tenantsGroup(prefix: d.config.userPrefix)
            for c in seen.closed where c.has != c.want {
                out.steps.append(Step(nil, "close-shared-dir", .directories, .custom(CloseSharedDir(path: c.path, group: group, traverse: c.want != 0))))
            }
        }
        return out
    }
}

/// A world-writable directory closed to the tenants: their group gets an ACL entry with no
/// permission (it precedes "other", so the 1777 mode no longer lets them in).
struct CloseSharedDir: CustomEffect {
    var path: String
    var group: String
    /// Passing through only (`--x`), for a directory with a path tenants need below it.
    var traverse: Bool
    var subject: String { "\(path): \(traverse ? "only passing through" : "no entry") for \(group)" }

    func run(_ context: ApplyContext) throws {
        let r = try context.runner.run(["/usr/bin/setfacl", "-m", "g:\(group):\(traverse ? "--x" : "---")", path])
        guard r.ok else { throw DesaError.system("closing \(path) to the tenants (setfacl) failed: \(r.message)") }
    }

    /// Takes the entry away again (a sandbox destroyed, its group about to go).
    static func reopen(_ path: String, gid: UInt32, runner: ProcessRunning) {
        _ = try? runner.run(["/usr/bin/setfacl", "-x", "g:\(gid)", path])
    }
}
