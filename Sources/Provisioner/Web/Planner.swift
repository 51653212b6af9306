import Foundation

/// Compares the desired state (the database, rendered through the templates) with what
/// the observer sees, and returns the actions that converge them. Pure apart from the
/// observer's reads; a converged server gives an empty plan.
public struct Planner {
    public var config: Config
    public var renderer: Renderer
    public var observer: Observing
    public var webGID: Int
    public var now: Date

    public init(config: Config, renderer: Renderer, observer: Observing, webGID: Int, now: Date) {
        self.config = config; self.renderer = renderer; self.observer = observer; self.webGID = webGID; self.now = now
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
        ]
        for v in config.php.keys.sorted() {
            let p = config.php[v]!
            dirs.append(DirSpec(path: p.poolDir, uid: 0, gid: 0, mode: 0o755))
            dirs.append(DirSpec(path: p.socketDir, uid: 0, gid: 0, mode: 0o755))
        }
        return dirs
    }

    func tenantDirectories(home: String, uid: Int, gid: Int) -> [DirSpec] {
        [
            DirSpec(path: home, uid: uid, gid: webGID, mode: 0o750),
            // setgid: files the village uploads stay readable by the web server's group.
            DirSpec(path: home + "/public", uid: uid, gid: webGID, mode: 0o2750),
            // nginx workers (www-data) write the access log here.
            DirSpec(path: home + "/logs", uid: uid, gid: webGID, mode: 0o2770),
            DirSpec(path: home + "/tmp", uid: uid, gid: gid, mode: 0o700),
            DirSpec(path: home + "/sessions", uid: uid, gid: gid, mode: 0o700),
        ]
    }

    func ensure(_ d: DirSpec, tenant: String?, into actions: inout [Action]) {
        guard let st = observer.stat(d.path) else {
            actions.append(.ensureDirectory(tenant: tenant, d, exists: false)); return
        }
        if !st.isDirectory || st.uid != d.uid || st.gid != d.gid || st.mode != d.mode {
            actions.append(.ensureDirectory(tenant: tenant, d, exists: true))
        }
    }

    public func plan(tenants: [Tenant], aliases: [String: [String]]) throws -> Plan {
        var actions: [Action] = []
        for d in baseDirectories() { ensure(d, tenant: nil, into: &actions) }

        let users = try observer.users(prefix: config.userPrefix)
        let configDirs = [config.nginxSitesDir] + config.php.values.map(\.poolDir)
        var onDisk = observer.configFiles(in: configDirs)
        var live = Set<String>()  // user names that should exist

        for t in tenants {
            let code = t.code
            let user = t.userName(prefix: config.userPrefix)
            let home = t.home(config)
            var mine: [Action] = []
            if t.desired == .deleted {
                if observer.stat(home) != nil {
                    if t.purge {
                        mine.append(.purgeHome(tenant: code, home: home))
                    } else {
                        mine.append(.archiveHome(tenant: code, home: home, to: archivePath(t)))
                    }
                }
                if t.status != .deleted { mine.append(.verify(tenant: code, expect: .deleted)) }
                actions += mine
                continue
            }
            live.insert(user)
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
            let uid = users[user]?.uid ?? t.uid
            let gid = users[user]?.gid ?? t.uid
            if users[user] == nil {
                mine.append(.createUser(tenant: code, UserSpec(name: user, uid: t.uid, home: home,
                                                                comment: "\(t.kind.rawValue) \(t.name)")))
            }
            for d in tenantDirectories(home: home, uid: uid, gid: gid) { ensure(d, tenant: code, into: &mine) }
            if let starter = rendered.starter {
                mine.append(.writeStarterPage(tenant: code, path: publicDir + "/index.html", content: starter, uid: uid, gid: webGID))
            }
            let php = try config.phpVersion(t.php)
            let files: [(String, String, ServiceRef)] = [
                (config.nginxSitesDir + "/" + t.slug + ".conf", rendered.vhost, .nginx),
                (php.poolDir + "/" + user + ".conf", rendered.pool, .php(t.php)),
            ]
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
            if !refused && (t.status != t.convergedStatus || !mine.isEmpty) {
                mine.append(.verify(tenant: code, expect: t.convergedStatus))
            }
            actions += mine
        }

        // Files we own that no tenant wants any more; files we do not own stay untouched.
        for (path, text) in onDisk.sorted(by: { $0.key < $1.key }) {
            guard let owner = Renderer.managedTenant(ofFileContent: text[...]) else { continue }
            let service: ServiceRef = path.hasPrefix(config.nginxSitesDir + "/") ? .nginx
                : .php(config.php.first { path.hasPrefix($0.value.poolDir + "/") }?.key ?? config.defaultPHP)
            actions.append(.removeConfig(tenant: owner, path: path, service: service))
        }
        let byUser = Dictionary(tenants.map { ($0.userName(prefix: config.userPrefix), $0.code) }, uniquingKeysWith: { a, _ in a })
        for name in users.keys.sorted() where !live.contains(name) {
            actions.append(.deleteUser(tenant: byUser[name], name: name))
        }
        return Plan(actions: actions)
    }

    func archivePath(_ t: Tenant) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return config.archiveDir + "/" + t.slug + "-" + t.code.filter(\.isNumber) + "-" + f.string(from: now)
    }
}
