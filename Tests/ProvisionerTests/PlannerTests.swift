import Foundation
import Testing
@testable import Provisioner

/// An in-memory view of a server, for planner decisions. The end-to-end tests run the
/// same planner against the real file system.
final class FakeObserver: Observing {
    var users: [String: SystemUser] = [:]
    var files: [String: String] = [:]
    var stats: [String: FileStat] = [:]
    func users(prefix: String) throws -> [String: SystemUser] { users }
    func configFiles(in dirs: [String]) -> [String: String] {
        files.filter { f in dirs.contains { f.key.hasPrefix($0 + "/") } }
    }
    func stat(_ path: String) -> FileStat? { stats[path] }
    var processes: [Int: Int] = [:]
    func processCounts(uids: Set<Int>) -> [Int: Int] { processes.filter { uids.contains($0.key) } }
    func read(_ path: String) -> String? { files[path] }
}

@Suite("Planner")
struct PlannerTests {
    let config = RendererTests.config()
    let webGID = 33
    let webUID = 33
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    func desired(_ tenants: [Tenant], aliases: [String: [String]] = [:], config: Config? = nil, removeUnknown: Bool = false) throws -> DesiredState {
        let c = config ?? self.config
        return DesiredState(config: c, renderer: try Renderer(config: c), tenants: tenants, aliases: aliases,
                            webGID: webGID, webUID: webUID, now: Self.now, removeUnknown: removeUnknown)
    }

    func plan(_ o: FakeObserver, _ tenants: [Tenant], aliases: [String: [String]] = [:], config: Config? = nil,
              removeUnknown: Bool = false) throws -> Plan {
        try Planner(observer: o).plan(try desired(tenants, aliases: aliases, config: config, removeUnknown: removeUnknown))
    }

    /// A server on which everything the plan asks for is already in place.
    func converged(_ tenants: [Tenant]) throws -> FakeObserver {
        let o = FakeObserver()
        for s in try plan(o, tenants).steps {
            switch s.effect {
            case .directory(let d): o.stats[d.path] = FileStat(uid: d.uid, gid: d.gid, mode: d.mode, isDirectory: true)
            case .user(let u): o.users[u.name] = SystemUser(name: u.name, uid: u.uid, gid: u.uid, home: u.home)
            case .userBatch(let b): o.files[b.file] = b.content
            case .managed(let m): o.files[m.path] = m.content
            case .content(let c): o.stats[c.path] = FileStat(uid: c.uid, gid: c.gid, mode: c.mode, isDirectory: false)
            case .file(let f): o.stats[f.path] = FileStat(uid: f.uid, gid: f.gid, mode: f.mode, isDirectory: false)
            case .link(let path, _): o.stats[path] = FileStat(uid: 0, gid: 0, mode: 0o777, isDirectory: false)
            default: break
            }
        }
        return o
    }

    func active(_ t: Tenant) -> Tenant { var t = t; t.status = .active; return t }

    @Test("a new tenant on an empty server: the whole plan, step by step")
    func newTenant() throws {
        let t = try RendererTests.tenant()
        let c = config
        let r = try Renderer(config: c)
        let plan = try plan(FakeObserver(), [t])
        let home = c.webRoot + "/cileunyi-kulon", logs = c.tenantLogRoot + "/cileunyi-kulon"
        let user = "dgold3204052001", uid = 310_000
        let php = c.php.versions["8.2"]!
        func dir(_ p: String, _ u: Int, _ g: Int, _ m: Int, _ who: String? = nil) -> Step {
            Step(who, "create-directory", .directories, .directory(DirSpec(path: p, uid: u, gid: g, mode: m)))
        }
        func file(_ p: String, _ u: Int, _ m: Int = 0o640) -> Step {
            Step(t.code, "create-file", .directories, .file(FileSpec(path: logs + "/" + p, uid: u, gid: uid, mode: m)))
        }
        let spec = UserSpec(name: user, uid: uid, home: home, comment: "desa Cileunyi Kulon")
        let expected: [Step] = [
            Step(nil, "create-sysusers", .users, .userBatch(UserBatch(file: c.sysusersFile, content: Users.sysusersText([spec], group: "dgold-tenants")))),
            dir(c.webRoot, 0, 0, 0o711), dir(c.archiveDir, 0, 0, 0o700), dir(c.logDir, 0, 0, 0o755), dir(c.tenantLogRoot, 0, 0, 0o711),
            dir(c.stateDir, 0, 0, 0o711), dir(c.acmeRoot, 0, 0, 0o755), dir(c.acmeRoot + "/.well-known", 0, 0, 0o755),
            dir(c.acmeRoot + "/.well-known/acme-challenge", 0, 0, 0o755), dir(c.nginx.sitesDir, 0, 0, 0o755),
            dir(php.poolDir, 0, 0, 0o755), dir(php.socketDir, 0, 0, 0o755),
            Step(t.code, "create-user", .users, .user(spec)),
            dir(home, uid, webGID, 0o750, t.code), dir(home + "/public", uid, webGID, 0o2750, t.code),
            dir(home + "/tmp", uid, uid, 0o700, t.code), dir(home + "/sessions", uid, uid, 0o700, t.code),
            dir(logs, 0, uid, 0o751, t.code),
            file("access.log", webUID), file("php-slow.log", 0), file("php-error.log", uid), file("error.log", 0),
            Step(t.code, "create-link", .directories, .link(path: home + "/logs", target: logs)),
            Step(t.code, "write-starter-page", .directories, .content(ContentSpec(path: home + "/public/index.html",
                 content: try r.starterPage(t, aliases: []), uid: uid, gid: webGID, mode: 0o640))),
            Step(t.code, "create-config", .files, .managed(ManagedFile(path: c.nginx.sitesDir + "/cileunyi-kulon.conf",
                 content: try r.vhost(t, aliases: []), service: "nginx", blame: [home + "/"]))),
            Step(t.code, "create-config", .files, .managed(ManagedFile(path: php.poolDir + "/" + user + ".conf",
                 content: try r.pool(t, aliases: []), service: "php8.2-fpm", blame: ["[pool \(user)]", home + "/"]))),
            Step(t.code, "verify", .verify, .verify(Verification(expect: .active, probes: [
                .http(host: "cileunyi-kulon.bandungkab.go.id", address: c.nginx.probe, expect: .active),
                .socket(path: php.socketDir + "/" + user + ".sock"),
            ]))),
        ]
        #expect(plan.steps.count == expected.count)
        for (a, b) in zip(plan.steps, expected) { #expect(a == b) }
        #expect(plan.unknown == [])
        #expect(plan.reloads == ["nginx", "php8.2-fpm"])
        #expect(plan.services.map(\.name) == ["nginx", "php8.2-fpm", "systemd"])
        #expect(plan.scale == 1)
    }

    @Test("a converged server plans nothing")
    func convergedIsEmpty() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        let plan = try plan(o, [active(t)])
        #expect(plan.isEmpty, "\(plan.lines(slugs: [:]))")
    }

    @Test("a file desa does not own is never overwritten")
    func foreignFile() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        let vhost = config.nginx.sitesDir + "/cileunyi-kulon.conf"
        o.files[vhost] = "server { listen 80; server_name hand-made; }\n"
        #expect(try plan(o, [active(t)]).steps == [
            .fail(t.code, "\(vhost) exists and is not managed by desa for this tenant; refusing to overwrite it"),
        ])
        // A foreign file that no tenant wants is left alone too.
        let o2 = try converged([t])
        o2.files[config.nginx.sitesDir + "/operator.conf"] = "server { }\n"
        #expect(try plan(o2, [active(t)]).isEmpty)
    }

    @Test("drift is repaired: a changed file, a wrong mode, a missing user")
    func drift() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        let vhost = config.nginx.sitesDir + "/cileunyi-kulon.conf"
        let wanted = o.files[vhost]!
        o.files[vhost]! += "# edited by hand\n"
        o.stats[t.home(config) + "/public"]!.mode = 0o777
        let spec = o.users["dgold3204052001"]!
        o.users = [:]
        let steps = try plan(o, [active(t)]).steps
        #expect(steps.map(\.op) == ["create-user", "fix-directory", "update-config", "verify"], "\(steps.map(\.op))")
        #expect(steps[0].effect == .user(UserSpec(name: spec.name, uid: spec.uid, home: spec.home, comment: "desa Cileunyi Kulon")))
        #expect(steps[1].effect == .directory(DirSpec(path: t.home(config) + "/public", uid: t.uid, gid: webGID, mode: 0o2750)))
        #expect(steps[2].effect == .managed(ManagedFile(path: vhost, content: wanted, service: "nginx", blame: [t.home(config) + "/"])))
    }

    @Test("a deleted tenant: configs removed, processes ended, home archived, user deleted")
    func deleted() throws {
        var t = try RendererTests.tenant()
        let o = try converged([t])
        o.processes = [t.uid: 2]
        t.desired = .deleted
        t.status = .active
        let home = t.home(config), logs = t.logDir(config)
        let pool = config.php.versions["8.2"]!.poolDir + "/dgold3204052001.conf"
        let expected: [Step] = [
            Step(nil, "update-sysusers", .users, .userBatch(UserBatch(file: config.sysusersFile, content: Users.sysusersText([], group: "dgold-tenants")))),
            Step(t.code, "delete-user", .userRemoval, .custom(DeleteUser(name: "dgold3204052001"))),
            Step(t.code, "stop-processes", .stop, .custom(StopProcesses(uid: t.uid, gid: t.uid, count: 2))),
            Step(t.code, "archive-home", .archive, .custom(ArchiveHome(home: home, logDir: logs,
                 to: config.archiveDir + "/cileunyi-kulon-3204052001-20270115T080000Z"))),
            Step(t.code, "remove-config", .files, .managed(ManagedFile(path: config.nginx.sitesDir + "/cileunyi-kulon.conf", content: nil, service: "nginx"))),
            Step(t.code, "remove-config", .files, .managed(ManagedFile(path: pool, content: nil, service: "php8.2-fpm"))),
            Step(t.code, "verify", .verify, .verify(Verification(expect: .deleted, probes: []))),
        ]
        #expect(try plan(o, [t]).steps == expected)
        t.purge = true
        #expect(try plan(o, [t]).steps.map(\.op).contains("purge-home"))
    }

    @Test("users and configs of this prefix that the database does not know are reported, removed only when asked")
    func unknownObjects() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        o.users["dgold3204059999"] = SystemUser(name: "dgold3204059999", uid: 310_099, gid: 310_099, home: "/x")
        let p = try plan(o, [active(t)])
        #expect(p.steps == [])
        #expect(p.unknown == ["user dgold3204059999 (uid 310099)"])
        // An emptied database: nothing of the 1 tenant on disk is planned for removal
        // (only the declaration of users, which lists none).
        let empty = try plan(o, [])
        #expect(empty.steps.map(\.op) == ["update-sysusers"], "\(empty.lines(slugs: [:]))")
        #expect(empty.unknown.count == 4, "\(empty.unknown)")
        #expect(try plan(o, [active(t)], removeUnknown: true).steps == [
            Step(nil, "delete-user", .userRemoval, .custom(DeleteUser(name: "dgold3204059999"))),
        ])
    }

    @Test("a user with a tenant's name but another UID or home is never adopted: the tenant fails")
    func foreignUser() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        o.users["dgold3204052001"]!.uid = 995
        let steps = try plan(o, [active(t)]).steps
        guard case .fail(let reason)? = steps.first?.effect, steps.count == 1 else {
            Issue.record("\(steps.map(\.op))"); return
        }
        #expect(reason.contains("UID 995") && reason.contains("never takes over"))
        var deleted = t
        deleted.desired = .deleted
        #expect(!(try plan(o, [deleted])).steps.map(\.op).contains("delete-user"))
    }

    @Test("a suspended tenant loses its pool and its processes")
    func suspendedRunsNothing() throws {
        var t = try RendererTests.tenant()
        let o = try converged([t])
        o.processes = [t.uid: 3]
        #expect(try plan(o, [active(t)]).isEmpty, "an active tenant's processes are its own business")
        t.desired = .suspended
        let ops = try plan(o, [active(t)]).steps.map(\.op)
        #expect(ops == ["stop-processes", "update-config", "remove-config", "verify"], "\(ops)")
    }

    @Test("a suspended tenant gets the 503 block, and its aliases follow it")
    func suspendAndAlias() throws {
        var t = try RendererTests.tenant()
        let o = try converged([t])
        t.desired = .suspended
        let plan = try plan(o, [active(t)], aliases: [t.code: ["cileunyikulon.desa.id"]])
        guard case .managed(let m)? = plan.steps.first(where: { $0.op == "update-config" })?.effect, m.service == "nginx" else {
            Issue.record("no vhost update"); return
        }
        #expect(m.content?.contains("return 503") == true)
        #expect(m.content?.contains("server_name cileunyi-kulon.bandungkab.go.id cileunyikulon.desa.id;") == true)
        #expect(plan.steps.last == Step(t.code, "verify", .verify, .verify(Verification(expect: .suspended, probes: [
            .http(host: "cileunyi-kulon.bandungkab.go.id", address: config.nginx.probe, expect: .suspended),
        ]))))
    }

    @Test("a tenant whose template is missing is marked failed and its files are kept")
    func missingTemplate() throws {
        var t = try RendererTests.tenant()
        let o = try converged([t])
        t.template = "gone"
        let steps = try plan(o, [active(t)]).steps
        #expect(steps.map(\.op) == ["fail"])
    }

    @Test("a starter page that does not render fails only its tenant; its vhost and pool stay")
    func brokenStarterPage() throws {
        let t = active(try RendererTests.tenant())
        let o = try converged([t])
        // The village has no index of its own yet, so the starter page is due again.
        o.stats = o.stats.filter { !$0.key.hasSuffix("/public/index.html") }
        let ops = FileManager.default.temporaryDirectory.appendingPathComponent("desa-ops-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: ops + "/pages", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: ops) }
        try "{{#unclosed}}".write(toFile: ops + "/pages/starter.html.mustache", atomically: true, encoding: .utf8)
        var c = config
        c.operatorTemplates = ops
        let steps = try plan(o, [t], config: c).steps
        #expect(steps.map(\.op) == ["fail"], "\(steps.map(\.op))")
        #expect(steps.first?.subject.contains("starter") == true, "\(steps.first?.subject ?? "")")
    }
}
