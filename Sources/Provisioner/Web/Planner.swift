import Foundation

/// Compares the desired state (the database, rendered through the templates) with what
/// the observer sees, and returns the actions that converge them. Pure apart from the
/// observer's reads; a converged server gives an empty plan.
///
/// It never trusts the database blindly: a user or config that carries desa's marks but
/// belongs to no tenant the database knows is reported in `Plan.unknown`, not removed
/// (unless `removeUnknown`), and a user with a tenant's name but not the UID and home
/// desa gave it fails that tenant instead of being adopted.
public struct Planner {
    public var config: Config
    public var renderer: Renderer
    public var observer: Observing
    public var webGID: Int
    /// The web server's user (nginx workers), which writes the tenants' access logs.
    public var webUID: Int
    public var now: Date
    /// Plan the removal of managed objects the database does not know.
    public var removeUnknown = false

    public init(config: Config, renderer: Renderer, observer: Observing, webGID: Int, webUID: Int = 33, now: Date) {
        self.config = config; self.renderer = renderer; self.observer = observer; self.webGID = webGID
        self.webUID = webUID; self.now = now
    }

    static let indexFiles = ["index.php", "index.html", "index.htm"]

    /// Directories every tenant lives in; created before any tenant.
    func baseDirectories() -> [DirSpec] {
        var dirs = [
            DirSpec(path: config.webRoot, uid: 0, gid: 0, mode: 0o711),
            DirSpec(path: config.acmeRoot, uid: 0, gid: 0, mode: 0o755),
            DirSpec(path: config.acmeRoot + "/.well-known", uid: 0, gid: 0, mode: 0o755),
            DirSpec(path: config.acmeRoot + "/.well-known/acme-challenge", uid: 0, gid: 0, mode: 0o755),
            DirSpec(path: config.archiveDir, uid: 0, gid: 0, mode: 0o700),
            DirSpec(path: config.nginxSitesDir, uid: 0, gid: 0, mode: 0o755),
            DirSpec(path: config.logDir, uid: 0, gid: 0, mode: 0o755),
            // Tenants and nginx's workers pass through; nobody lists it.
            DirSpec(path: config.tenantLogRoot, uid: 0, gid: 0, mode: 0o711),
        ]
        for v in config.php.keys.sorted() {
            let p = config.php[v]!
            dirs.append(DirSpec(path: p.poolDir, uid: 0, gid: 0, mode: 0o755))
            dirs.append(DirSpec(path: p.socketDir, uid: 0, gid: 0, mode: 0o755))
        }
        return dirs
    }

    func tenantDirectories(_ t: Tenant, uid: Int, gid: Int) -> [DirSpec] {
        let home = t.home(config)
        return [
            DirSpec(path: home, uid: uid, gid: webGID, mode: 0o750),
            // setgid: files the village uploads stay readable by the web server's group.
            DirSpec(path: home + "/public", uid: uid, gid: webGID, mode: 0o2750),
            DirSpec(path: home + "/tmp", uid: uid, gid: gid, mode: 0o700),
            DirSpec(path: home + "/sessions", uid: uid, gid: gid, mode: 0o700),
            // Root's own: the tenant reads it through its group and cannot add, remove or
            // replace an entry; nginx's workers pass through to the access log.
            DirSpec(path: t.logDir(config), uid: 0, gid: gid, mode: 0o751),
        ]
    }

    /// The log files root-run masters (and the tenant's PHP) open, made in advance so
    /// each has the owner that writes it and the tenant's group to read it.
    func logFiles(_ t: Tenant, uid: Int, gid: Int) -> [FileSpec] {
        let dir = t.logDir(config)
        var files = [
            FileSpec(path: dir + "/access.log", uid: webUID, gid: gid, mode: 0o640),
            FileSpec(path: dir + "/php-slow.log", uid: 0, gid: gid, mode: 0o640),
            FileSpec(path: dir + "/php-error.log", uid: uid, gid: gid, mode: 0o640),
        ]
        if config.tenantErrorLogs == "tenant" { files.append(FileSpec(path: dir + "/error.log", uid: 0, gid: gid, mode: 0o640)) }
        return files
    }

    func ensure(_ d: DirSpec, tenant: String?, into actions: inout [Action]) {
        guard let st = observer.stat(d.path) else {
            actions.append(.ensureDirectory(tenant: tenant, d, exists: false)); return
        }
        if !st.isDirectory || st.uid != d.uid || st.gid != d.gid || st.mode != d.mode {
            actions.append(.ensureDirectory(tenant: tenant, d, exists: true))
        }
    }

    func ensure(_ f: FileSpec, tenant: String, into actions: inout [Action]) {
        guard let st = observer.stat(f.path) else {
            actions.append(.ensureFile(tenant: tenant, f, exists: false)); return
        }
        if st.isDirectory || st.uid != f.uid || st.gid != f.gid || st.mode != f.mode {
            actions.append(.ensureFile(tenant: tenant, f, exists: true))
        }
    }

    public func plan(tenants: [Tenant], aliases: [String: [String]]) throws -> Plan {
        var actions: [Action] = []
        for d in baseDirectories() { ensure(d, tenant: nil, into: &actions) }

        let users = try observer.users(prefix: config.userPrefix)
        let configDirs = [config.nginxSitesDir] + config.php.values.map(\.poolDir)
        var onDisk = observer.configFiles(in: configDirs)
        let known = Set(tenants.map(\.code))
        var tenantUsers = Set<String>()  // user names that belong to a tenant the database knows
        let idle = tenants.filter { $0.desired != .active }.map(\.uid)
        let processes = observer.processCounts(uids: Set(idle))

        for t in tenants {
            let code = t.code
            let user = t.userName(prefix: config.userPrefix)
            tenantUsers.insert(user)
            let home = t.home(config)
            var mine: [Action] = []
            // Only the user desa created for this tenant (its UID and home) is ever ours.
            let existing = users[user]
            let ours = existing.map { $0.uid == t.uid && $0.home == home } ?? false
            if t.desired == .deleted {
                if ours, let n = processes[t.uid], n > 0 {
                    mine.append(.stopProcesses(tenant: code, uid: t.uid, gid: existing!.gid, count: n))
                }
                if observer.stat(home) != nil || observer.stat(t.logDir(config)) != nil {
                    if t.purge {
                        mine.append(.purgeHome(tenant: code, home: home))
                    } else {
                        mine.append(.archiveHome(tenant: code, home: home, to: archivePath(t)))
                    }
                }
                if ours { mine.append(.deleteUser(tenant: code, name: user)) }
                if t.status != .deleted { mine.append(.verify(tenant: code, expect: .deleted)) }
                actions += mine
                continue
            }
            if let u = existing, !ours {
                actions.append(.fail(tenant: code, reason: "user \(u.name) exists with UID \(u.uid) and home \(u.home), but desa made it with UID \(t.uid) and home \(home); desa never takes over or changes a user it did not create: remove or rename that user, then desactl apply"))
                for (path, text) in onDisk where Renderer.managedTenant(ofFileContent: text[...]) == code { onDisk[path] = nil }
                continue
            }
            let tenantAliases = aliases[code] ?? []
            let publicDir = home + "/public"
            // The starter page only until the village puts up its own index.
            let needsStarter = !Self.indexFiles.contains(where: { observer.stat(publicDir + "/" + $0) != nil })
            let rendered: (vhost: String, pool: String, starter: String?)
            do {
                rendered = (try renderer.vhost(t, aliases: tenantAliases), try renderer.pool(t, aliases: tenantAliases),
                            needsStarter ? try renderer.starterPage(t, aliases: tenantAliases) : nil)
            } catch let e as DesaError {
                // Keep whatever the tenant has now; mark it failed with the reason.
                actions.append(.fail(tenant: code, reason: e.message))
                for (path, text) in onDisk where Renderer.managedTenant(ofFileContent: text[...]) == code { onDisk[path] = nil }
                continue
            }
            let uid = t.uid
            let gid = existing?.gid ?? t.uid
            if existing == nil {
                mine.append(.createUser(tenant: code, UserSpec(name: user, uid: t.uid, home: home,
                                                                comment: "\(t.kind.rawValue) \(t.name)")))
            }
            for d in tenantDirectories(t, uid: uid, gid: gid) { ensure(d, tenant: code, into: &mine) }
            for f in logFiles(t, uid: uid, gid: gid) { ensure(f, tenant: code, into: &mine) }
            if observer.stat(home + "/logs") == nil {
                mine.append(.createLink(tenant: code, path: home + "/logs", target: t.logDir(config)))
            }
            if let starter = rendered.starter {
                mine.append(.writeStarterPage(tenant: code, path: publicDir + "/index.html", content: starter, uid: uid, gid: webGID))
            }
            let php = try config.phpVersion(t.php)
            var files: [(String, String, ServiceRef)] = [(config.nginxSitesDir + "/" + t.slug + ".conf", rendered.vhost, .nginx)]
            // A suspended tenant has no pool: it runs no PHP at all.
            if t.desired == .active { files.append((php.poolDir + "/" + user + ".conf", rendered.pool, .php(t.php))) }
            var refused = false
            for (path, content, service) in files {
                let existing = onDisk.removeValue(forKey: path)
                if let existing, Renderer.managedTenant(ofFileContent: existing[...]) != code {
                    mine.append(.fail(tenant: code, reason: "\(path) exists and is not managed by desa for this tenant; refusing to overwrite it"))
                    refused = true
                } else if existing != content {
                    mine.append(.writeConfig(tenant: code, path: path, content: content, service: service, isNew: existing == nil))
                }
            }
            if refused { mine.removeAll { if case .writeConfig = $0 { return true }; return false } }
            if t.desired == .suspended, let n = processes[t.uid], n > 0 {
                mine.append(.stopProcesses(tenant: code, uid: t.uid, gid: gid, count: n))
            }
            if !refused && (t.status != t.convergedStatus || !mine.isEmpty) {
                mine.append(.verify(tenant: code, expect: t.convergedStatus))
            }
            actions += mine
        }

        // Files we own that no tenant wants any more; files we do not own stay untouched,
        // and files of tenants the database does not know are only reported.
        var unknown: [String] = []
        for (path, text) in onDisk.sorted(by: { $0.key < $1.key }) {
            guard let owner = Renderer.managedTenant(ofFileContent: text[...]) else { continue }
            guard known.contains(owner) || removeUnknown else {
                unknown.append("config \(path) of tenant \(owner)"); continue
            }
            actions.append(.removeConfig(tenant: known.contains(owner) ? owner : nil, path: path, service: service(ofConfig: path)))
        }
        for name in users.keys.sorted() where !tenantUsers.contains(name) {
            if removeUnknown { actions.append(.deleteUser(tenant: nil, name: name)) } else {
                unknown.append("user \(name) (uid \(users[name]!.uid))")
            }
        }
        return Plan(actions: actions, unknown: unknown)
    }

    /// The service a managed config belongs to, from the directory it is in.
    func service(ofConfig path: String) -> ServiceRef {
        let dir = (path as NSString).deletingLastPathComponent
        if dir == config.nginxSitesDir { return .nginx }
        return .php(config.php.first { $0.value.poolDir == dir }?.key ?? config.defaultPHP)
    }

    func archivePath(_ t: Tenant) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return config.archiveDir + "/" + t.slug + "-" + t.code.filter(\.isNumber) + "-" + f.string(from: now)
    }
}
