import Foundation

/// Each tenant's home (`public/`, `tmp/`, `sessions/`), its log directory outside the
/// home with the log files made in advance, the `logs` convenience link and the starter
/// page; and, for a deleted tenant, its processes ended and its home archived or purged.
/// A home belongs to a tenant that may swap a directory for a link at any moment:
/// everything below the web root is done by descriptor (see `DirHandle`).
public struct HomesCapability: Capability {
    public struct Observation: Sendable {
        /// The base directories.
        public var stats: [String: FileStat]
        /// Each tenant's paths (`paths(t, d)`, in that order) as found, by village code: an
        /// array each rather than one dictionary of every path, which at 5,000 tenants held
        /// 60,000 keys and took a third of a plan's memory.
        public var homes: [String: [FileStat?]]
        public var users: [String: SystemUser]
        /// Running processes per UID, for suspended and deleted tenants.
        public var processes: [Int: Int]
    }

    public init() {}
    public var name: String { "homes" }

    static let indexFiles = ["index.php", "index.html", "index.htm"]

    /// Directories every tenant lives in; created before any tenant's.
    func baseDirectories(_ c: Config) -> [DirSpec] {
        [
            DirSpec(path: c.webRoot, uid: 0, gid: 0, mode: 0o711),
            DirSpec(path: c.archiveDir, uid: 0, gid: 0, mode: 0o700),
            DirSpec(path: c.logDir, uid: 0, gid: 0, mode: 0o755),
            // Tenants and nginx's workers pass through; nobody lists it.
            DirSpec(path: c.tenantLogRoot, uid: 0, gid: 0, mode: 0o711),
        ]
    }

    func tenantDirectories(_ t: Tenant, _ d: DesiredState, uid: Int, gid: Int) -> [DirSpec] {
        let home = t.home(d.config)
        return [
            DirSpec(path: home, uid: uid, gid: d.webGID, mode: 0o750),
            // setgid: files the village uploads stay readable by the web server's group.
            DirSpec(path: home + "/public", uid: uid, gid: d.webGID, mode: 0o2750),
            DirSpec(path: home + "/tmp", uid: uid, gid: gid, mode: 0o700),
            DirSpec(path: home + "/sessions", uid: uid, gid: gid, mode: 0o700),
            // Root's own: the tenant reads it through its group and cannot add, remove or
            // replace an entry; nginx's workers pass through to the access log.
            DirSpec(path: t.logDir(d.config), uid: 0, gid: gid, mode: 0o751),
        ]
    }

    /// The log files root-run masters (and the tenant's PHP) open, made in advance so
    /// each has the owner that writes it and the tenant's group to read it.
    func logFiles(_ t: Tenant, _ d: DesiredState, uid: Int, gid: Int) -> [FileSpec] {
        let dir = t.logDir(d.config)
        var files = [
            FileSpec(path: dir + "/access.log", uid: d.webUID, gid: gid, mode: 0o640),
            FileSpec(path: dir + "/php-slow.log", uid: 0, gid: gid, mode: 0o640),
            FileSpec(path: dir + "/php-error.log", uid: uid, gid: gid, mode: 0o640),
        ]
        if d.config.nginx.tenantErrorLogs == .tenant { files.append(FileSpec(path: dir + "/error.log", uid: 0, gid: gid, mode: 0o640)) }
        return files
    }

    /// Every path of a tenant's that the plan looks at.
    func paths(_ t: Tenant, _ d: DesiredState) -> [String] {
        let home = t.home(d.config)
        return [home, home + "/public", home + "/tmp", home + "/sessions", home + "/logs", t.logDir(d.config)]
            + Self.indexFiles.map { home + "/public/" + $0 } + logFiles(t, d, uid: 0, gid: 0).map(\.path)
    }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        var homes: [String: [FileStat?]] = [:]
        homes.reserveCapacity(d.tenants.count)
        for t in d.tenants { homes[t.code] = paths(t, d).map { host.stat($0) } }
        let idle = Set(d.tenants.filter { $0.desired != .active }.map(\.uid))
        return Observation(stats: host.stats(baseDirectories(d.config).map(\.path)), homes: homes,
                           users: try host.users(prefix: d.config.userPrefix), processes: host.processCounts(uids: idle))
    }

    /// A tenant's paths that exist, as found.
    func found(_ t: Tenant, _ d: DesiredState, _ seen: Observation) -> [String: FileStat] {
        var out: [String: FileStat] = [:]
        for (p, st) in zip(paths(t, d), seen.homes[t.code] ?? []) { if let st { out[p] = st } }
        return out
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        out.steps += Step.ensure(baseDirectories(d.config), nil, seen.stats)
        for t in d.tenants {
            let home = t.home(d.config)
            let stats = found(t, d, seen)
            let existing = seen.users[t.userName(prefix: d.config.userPrefix)]
            let ours = t.isOwnUser(existing, d.config)
            if t.desired == .deleted {
                if ours, let n = seen.processes[t.uid], n > 0 {
                    out.steps.append(Step(t.code, "stop-processes", .stop, .custom(StopProcesses(uid: t.uid, gid: existing!.gid, count: n))))
                }
                if stats[home] != nil || stats[t.logDir(d.config)] != nil {
                    out.steps.append(t.purge
                        ? Step(t.code, "purge-home", .archive, .custom(PurgeHome(home: home, logDir: t.logDir(d.config))))
                        : Step(t.code, "archive-home", .archive, .custom(ArchiveHome(home: home, logDir: t.logDir(d.config),
                                                                                           to: t.archivePath(d.config, at: d.now)))))
                }
                continue
            }
            let uid = t.uid, gid = existing?.gid ?? t.uid
            out.steps += Step.ensure(tenantDirectories(t, d, uid: uid, gid: gid), t.code, stats)
            for f in logFiles(t, d, uid: uid, gid: gid) { if let s = Step.ensure(f, t.code, stats) { out.steps.append(s) } }
            if stats[home + "/logs"] == nil {
                out.steps.append(Step(t.code, "create-link", .directories, .link(path: home + "/logs", target: t.logDir(d.config))))
            }
            // The starter page only until the village puts up its own index.
            if !Self.indexFiles.contains(where: { stats[home + "/public/" + $0] != nil }) {
                do {
                    let page = try d.renderer.starterPage(t, aliases: d.aliases[t.code] ?? [])
                    out.steps.append(Step(t.code, "write-starter-page", .directories,
                                          .content(ContentSpec(path: home + "/public/index.html", content: page, uid: uid, gid: d.webGID, mode: 0o640))))
                } catch {
                    out.steps.append(.fail(t.code, Applier.message(error)))
                }
            }
            if t.desired == .suspended, let n = seen.processes[t.uid], n > 0 {
                out.steps.append(Step(t.code, "stop-processes", .stop, .custom(StopProcesses(uid: t.uid, gid: gid, count: n))))
            }
        }
        return out
    }
}

/// Ends every process of a suspended or deleted tenant, forks included.
struct StopProcesses: CustomEffect {
    var uid: Int
    var gid: Int
    var count: Int
    var subject: String { "uid \(uid): \(count == 1 ? "1 process" : "\(count) processes")" }

    func run(_ context: ApplyContext) throws {
        let left = try Processes.killAll(uid: uid, gid: gid, timeout: 5, time: context.time)
        if left > 0 { throw DesaError.system("\(left) processes of uid \(uid) are still running after SIGKILL") }
    }
}

/// Moves a home into the archive and gives everything in it to root: the UID will be
/// reused. The tenant's server logs go along, as `server-logs`.
struct ArchiveHome: CustomEffect {
    var home: String
    var logDir: String
    var to: String
    var subject: String { "\(home) -> \(to)" }

    func run(_ context: ApplyContext) throws {
        func split(_ p: String) -> (String, String) { ((p as NSString).deletingLastPathComponent, (p as NSString).lastPathComponent) }
        let (archiveDir, name) = split(to), (webRoot, slug) = split(home), (logRoot, logName) = split(logDir)
        let archive = try DirHandle.open(archiveDir)
        let web = try DirHandle.open(webRoot)
        if web.stat(slug) != nil { try web.move(slug, to: archive, as: name) }
        let archived = try archive.ensureDir(name, uid: 0, gid: 0, mode: 0o700)
        if let logs = try? DirHandle.open(logRoot), logs.stat(logName) != nil {
            try logs.move(logName, to: archived, as: "server-logs")
        }
        try archived.chownTree(uid: 0, gid: 0)
        try archived.ensureOwnership(uid: 0, gid: 0, mode: 0o700)
    }
}

/// Removes a home and the tenant's log directory for good.
struct PurgeHome: CustomEffect {
    var home: String
    var logDir: String
    var subject: String { home }

    func run(_ context: ApplyContext) throws {
        for p in [home, logDir] {
            guard let parent = try? DirHandle.open((p as NSString).deletingLastPathComponent) else { continue }
            try parent.removeTree((p as NSString).lastPathComponent)
        }
    }
}
