import Foundation
import Testing
@testable import Provisioner

/// A MariaDB server as the databases capability reads it, in memory.
struct FakeCatalog: DatabaseCatalogReading {
    var catalog = DatabaseCatalog()
    /// Set: the server cannot be reached, for this reason.
    var down: String?

    func read(_ m: MariaDBSettings) throws -> DatabaseCatalog {
        if let down { throw DesaError.system(down) }
        return catalog
    }
}

/// The databases capability's decisions, without MariaDB: what the server has (a fake
/// catalog) and what the home holds (a fake observer) against the rows of the state
/// database. The end-to-end tests (`DatabaseTests`) run the same plans on a real server.
@Suite("Databases: planning without a server")
struct DatabasesPlannerTests {
    var config: Config {
        var c = RendererTests.config()
        c.mariadb.enabled = true
        return c
    }
    let name = "desa_3204052001"
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    func plan(_ catalog: FakeCatalog, tenant: Tenant, row: TenantDatabase?, credentials: FileStat? = nil,
              staged: Bool = false, rotate: Bool = false) throws -> [Step] {
        var d = DesiredState(config: config, renderer: try Renderer(config: config), tenants: [tenant], aliases: [:],
                             webGID: 33, webUID: 33, now: Self.now)
        d.set(DatabasesCapability.self, .init(rows: row.map { [tenant.code: $0] } ?? [:], rotate: rotate ? [tenant.code] : []))
        let o = FakeObserver()
        let home = tenant.home(config)
        if let credentials { o.stats[home + "/.my.cnf"] = credentials }
        if staged { o.stats[home + "/.my.cnf.desa-rotating"] = FileStat(uid: tenant.uid, gid: tenant.uid, mode: 0o600, isDirectory: false) }
        let capability = DatabasesCapability(catalog: catalog)
        return try capability.plan(d, try capability.observe(d, o)).steps
    }

    var row: TenantDatabase { TenantDatabase(code: "32.04.05.2001", name: name, user: name, createdAt: Self.now) }

    /// What a server has once the tenant's database is made.
    var made: FakeCatalog {
        FakeCatalog(catalog: DatabaseCatalog(databases: [name], accounts: ["\(name)@localhost", "\(name)@127.0.0.1"],
                                             grants: ["\(name)@localhost \(SQL.grantPattern(name))", "\(name)@127.0.0.1 \(SQL.grantPattern(name))"]))
    }

    func goodFile(_ t: Tenant) -> FileStat { FileStat(uid: t.uid, gid: t.uid, mode: 0o600, isDirectory: false) }

    @Test("a new database: created, then its user with a new password")
    func new() throws {
        let t = try RendererTests.tenant()
        let steps = try plan(FakeCatalog(), tenant: t, row: row)
        #expect(steps.map(\.op) == ["create-database", "create-db-user"])
        #expect(steps.map(\.subject) == [name, "\(name) on \(name) (new password)"])
    }

    @Test("converged: nothing to do; a tenant without a row is none of its business")
    func converged() throws {
        let t = try RendererTests.tenant()
        #expect(try plan(made, tenant: t, row: row, credentials: goodFile(t)).isEmpty)
        #expect(try plan(FakeCatalog(down: "unused"), tenant: t, row: nil).isEmpty)
    }

    @Test("a server that cannot be reached fails the tenants that have a database, with the reason")
    func unreachable() throws {
        let t = try RendererTests.tenant()
        let steps = try plan(FakeCatalog(down: "Can't connect to server on '127.0.0.1' (111)"), tenant: t, row: row, credentials: goodFile(t))
        #expect(steps == [.fail(t.code, "its database \(name) cannot be managed: Can't connect to server on '127.0.0.1' (111)")])
    }

    @Test("a password staged by a run cut off half-way, a rotation, a credentials file gone or loosened: a new password")
    func newPassword() throws {
        let t = try RendererTests.tenant()
        #expect(try plan(made, tenant: t, row: row, credentials: goodFile(t), staged: true).map(\.op) == ["reset-db-password"])
        #expect(try plan(made, tenant: t, row: row, credentials: goodFile(t), rotate: true).map(\.op) == ["rotate-db-password"])
        #expect(try plan(made, tenant: t, row: row).map(\.op) == ["reset-db-password"])
        var loose = goodFile(t)
        loose.mode = 0o644
        #expect(try plan(made, tenant: t, row: row, credentials: loose).map(\.op) == ["reset-db-password"])
        var foreign = goodFile(t)
        foreign.uid = 0
        #expect(try plan(made, tenant: t, row: row, credentials: foreign).map(\.op) == ["reset-db-password"])
    }

    @Test("a grant revoked by hand is given back, with the password kept")
    func grants() throws {
        let t = try RendererTests.tenant()
        var server = made
        server.catalog.grants.remove("\(name)@127.0.0.1 \(SQL.grantPattern(name))")
        let steps = try plan(server, tenant: t, row: row, credentials: goodFile(t))
        #expect(steps.map(\.op) == ["grant-database"])
        #expect(steps.map(\.subject) == ["\(name) on \(name)"])
    }

    @Test("a deleted database, or a deleted tenant's: dumped into the archive, then dropped")
    func deleted() throws {
        var t = try RendererTests.tenant()
        var gone = row
        gone.desired = .deleted
        let dump = t.archivePath(config, at: Self.now) + "-database.sql"
        let dropped = try plan(made, tenant: t, row: gone, credentials: goodFile(t))
        #expect(dropped == [Step(t.code, "drop-database", .archive, .custom(DropDatabase(name: name, user: name, dumpTo: dump,
                                                                                          credentialsIn: t.home(config))))])
        t.desired = .deleted
        let withTenant = try plan(made, tenant: t, row: row, credentials: goodFile(t))
        #expect(withTenant == [Step(t.code, "drop-database", .archive, .custom(DropDatabase(name: name, user: name, dumpTo: dump,
                                                                                             credentialsIn: nil)))])
        // Nothing left on the server: nothing to drop.
        #expect(try plan(FakeCatalog(), tenant: t, row: gone).isEmpty)
    }
}
