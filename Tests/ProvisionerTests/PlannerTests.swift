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
}

@Suite("Planner")
struct PlannerTests {
    let config = RendererTests.config()
    let webGID = 33

    func planner(_ o: FakeObserver) throws -> Planner {
        Planner(config: config, renderer: try Renderer(config: config), observer: o, webGID: webGID,
                now: Date(timeIntervalSince1970: 1_800_000_000))
    }

    /// A server on which everything the plan asks for is already in place.
    func converged(_ tenants: [Tenant]) throws -> FakeObserver {
        let o = FakeObserver()
        let p = try planner(o).plan(tenants: tenants, aliases: [:])
        for a in p.actions {
            switch a {
            case .ensureDirectory(_, let d, _): o.stats[d.path] = FileStat(uid: d.uid, gid: d.gid, mode: d.mode, isDirectory: true)
            case .createUser(_, let u): o.users[u.name] = SystemUser(name: u.name, uid: u.uid, gid: u.uid, home: u.home)
            case .writeConfig(_, let path, let content, _, _): o.files[path] = content
            case .writeStarterPage(_, let path, _, _, _): o.stats[path] = FileStat(uid: 0, gid: 0, mode: 0o640, isDirectory: false)
            case .ensureFile(_, let f, _): o.stats[f.path] = FileStat(uid: f.uid, gid: f.gid, mode: f.mode, isDirectory: false)
            case .createLink(_, let path, _): o.stats[path] = FileStat(uid: 0, gid: 0, mode: 0o777, isDirectory: false)
            default: break
            }
        }
        return o
    }

    func active(_ t: Tenant) -> Tenant { var t = t; t.status = .active; return t }

    @Test("a new tenant: user, directories, vhost, pool, starter page, verify")
    func newTenant() throws {
        let t = try RendererTests.tenant()
        let plan = try planner(FakeObserver()).plan(tenants: [t], aliases: [:])
        let ops = plan.actions(for: t.code).map(\.op)
        #expect(ops.filter { $0 == "create-user" }.count == 1)
        #expect(ops.filter { $0 == "create-directory" }.count == 5)
        #expect(ops.filter { $0 == "create-config" }.count == 2)
        #expect(ops.contains("write-starter-page"))
        #expect(ops.last == "verify")
        #expect(plan.reloads == [.nginx, .php("8.2")])
    }

    @Test("a converged server plans nothing")
    func convergedIsEmpty() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        let plan = try planner(o).plan(tenants: [active(t)], aliases: [:])
        #expect(plan.isEmpty, "\(plan.lines(slugs: [:]))")
    }

    @Test("a file desa does not own is never overwritten")
    func foreignFile() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        let vhost = config.nginxSitesDir + "/cileunyi-kulon.conf"
        o.files[vhost] = "server { listen 80; server_name hand-made; }\n"
        let plan = try planner(o).plan(tenants: [active(t)], aliases: [:])
        #expect(plan.actions.contains { if case .fail(_, let r) = $0 { return r.contains("not managed by desa") }; return false })
        #expect(!plan.actions.contains { if case .writeConfig(_, let p, _, _, _) = $0 { return p == vhost }; return false })
        // A foreign file that no tenant wants is left alone too.
        let o2 = try converged([t])
        o2.files[config.nginxSitesDir + "/operator.conf"] = "server { }\n"
        #expect(try planner(o2).plan(tenants: [active(t)], aliases: [:]).isEmpty)
    }

    @Test("drift is repaired: a changed file, a wrong mode, a missing user")
    func drift() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        o.files[config.nginxSitesDir + "/cileunyi-kulon.conf"]! += "# edited by hand\n"
        o.stats[t.home(config) + "/public"]!.mode = 0o777
        o.users = [:]
        let ops = try planner(o).plan(tenants: [active(t)], aliases: [:]).actions.map(\.op)
        #expect(ops.contains("update-config"))
        #expect(ops.contains("fix-directory"))
        #expect(ops.contains("create-user"))
    }

    @Test("a deleted tenant: configs removed, user deleted, home archived")
    func deleted() throws {
        var t = try RendererTests.tenant()
        let o = try converged([t])
        t.desired = .deleted
        t.status = .active
        let plan = try planner(o).plan(tenants: [t], aliases: [:])
        let ops = plan.actions.map(\.op)
        #expect(ops.filter { $0 == "remove-config" }.count == 2)
        #expect(ops.contains("delete-user"))
        #expect(ops.contains("archive-home"))
        #expect(plan.actions.contains { if case .archiveHome(_, _, let to) = $0 { return to.hasSuffix("cileunyi-kulon-3204052001-20270115T080000Z") }; return false })
        t.purge = true
        #expect(try planner(o).plan(tenants: [t], aliases: [:]).actions.map(\.op).contains("purge-home"))
    }

    @Test("users and configs of this prefix that the database does not know are reported, removed only when asked")
    func unknownObjects() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        o.users["dgold3204059999"] = SystemUser(name: "dgold3204059999", uid: 310_099, gid: 310_099, home: "/x")
        let plan = try planner(o).plan(tenants: [active(t)], aliases: [:])
        #expect(plan.actions == [])
        #expect(plan.unknown == ["user dgold3204059999 (uid 310099)"])
        // An emptied database: nothing of the 1 tenant on disk is planned for removal.
        let empty = try planner(o).plan(tenants: [], aliases: [:])
        #expect(empty.actions.isEmpty, "\(empty.lines(slugs: [:]))")
        #expect(empty.unknown.count == 4, "\(empty.unknown)")
        var p = try planner(o)
        p.removeUnknown = true
        #expect(try p.plan(tenants: [active(t)], aliases: [:]).actions == [.deleteUser(tenant: nil, name: "dgold3204059999")])
    }

    @Test("a user with a tenant's name but another UID or home is never adopted: the tenant fails")
    func foreignUser() throws {
        let t = try RendererTests.tenant()
        let o = try converged([t])
        o.users["dgold3204052001"]!.uid = 995
        let plan = try planner(o).plan(tenants: [active(t)], aliases: [:])
        guard case .fail(_, let reason)? = plan.actions.first, plan.actions.count == 1 else {
            Issue.record("\(plan.lines(slugs: [:]))"); return
        }
        #expect(reason.contains("UID 995") && reason.contains("never takes over"))
        var deleted = t
        deleted.desired = .deleted
        #expect(!(try planner(o).plan(tenants: [deleted], aliases: [:])).actions.map(\.op).contains("delete-user"))
    }

    @Test("a suspended tenant loses its pool and its processes")
    func suspendedRunsNothing() throws {
        var t = try RendererTests.tenant()
        let o = try converged([t])
        o.processes = [t.uid: 3]
        #expect(try planner(o).plan(tenants: [active(t)], aliases: [:]).isEmpty, "an active tenant's processes are its own business")
        t.desired = .suspended
        let ops = try planner(o).plan(tenants: [active(t)], aliases: [:]).actions.map(\.op)
        #expect(ops == ["update-config", "stop-processes", "verify", "remove-config"], "\(ops)")
    }

    @Test("a suspended tenant gets the 503 block, and its aliases follow it")
    func suspendAndAlias() throws {
        var t = try RendererTests.tenant()
        let o = try converged([t])
        t.desired = .suspended
        let plan = try planner(o).plan(tenants: [active(t)], aliases: [t.code: ["cileunyikulon.desa.id"]])
        guard case .writeConfig(_, _, let content, .nginx, false)? = plan.actions.first(where: { $0.op == "update-config" }) else {
            Issue.record("no vhost update"); return
        }
        #expect(content.contains("return 503"))
        #expect(content.contains("server_name cileunyi-kulon.bandungkab.go.id cileunyikulon.desa.id;"))
        #expect(plan.actions.contains(.verify(tenant: t.code, expect: .suspended)))
    }

    @Test("a tenant whose template is missing is marked failed and its files are kept")
    func missingTemplate() throws {
        var t = try RendererTests.tenant()
        let o = try converged([t])
        t.template = "gone"
        let plan = try planner(o).plan(tenants: [active(t)], aliases: [:])
        #expect(plan.actions.count == 1)
        #expect(plan.actions.first?.op == "fail")
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
        let plan = try Planner(config: c, renderer: try Renderer(config: c), observer: o, webGID: webGID,
                               now: Date(timeIntervalSince1970: 1_800_000_000)).plan(tenants: [t], aliases: [:])
        #expect(plan.actions.map(\.op) == ["fail"], "\(plan.actions.map(\.op))")
        #expect(plan.actions.first?.subject.contains("starter") == true, "\(plan.actions.first?.subject ?? "")")
    }
}
