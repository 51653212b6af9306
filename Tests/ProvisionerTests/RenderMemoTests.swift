import Foundation
import Testing
@testable import Provisioner

/// The agent's render memo: a file is known to match its template without rendering only
/// when its inputs and its bytes are those of the last render; anything else is rendered.
@Suite("Render memo")
struct RenderMemoTests {
    let config = RendererTests.config()

    @Test("a converged plan with a memo: nothing rendered the second time, still nothing planned; a file edited by hand is still found")
    func memoizedPlans() throws {
        let memo = RenderMemo()
        let a = try RendererTests.tenant()
        var b = try RendererTests.tenant()
        b.code = "32.04.05.2002"; b.slug = "cileunyi-wetan"; b.name = "Cileunyi Wetan"; b.uid = 310_001
        let tenants = [a, b].map { t -> Tenant in var t = t; t.status = .active; return t }
        let planner = PlannerTests()
        let o = try planner.converged(tenants)
        func plan() throws -> Plan {
            let d = DesiredState(config: config, renderer: try Renderer(config: config, memo: memo), tenants: tenants, aliases: [:],
                                 webGID: 33, webUID: 33, now: PlannerTests.now)
            return try Planner(observer: o).plan(d)
        }
        #expect(try plan().steps.isEmpty)
        #expect(memo.count == 4, "a vhost and a pool for each of two tenants")
        #expect(try plan().steps.isEmpty)
        #expect(memo.count == 4)

        // Someone edits a vhost: the memo knows the inputs, not these bytes.
        let vhost = config.nginx.sitesDir + "/cileunyi-wetan.conf"
        let good = try #require(o.files[vhost])
        o.files[vhost] = good.replacingOccurrences(of: "disable_symlinks if_not_owner;", with: "disable_symlinks off;")
        let edited = try plan()
        #expect(edited.steps.map(\.op) == ["update-config", "verify"] && edited.steps.allSatisfy { $0.tenant == b.code }, "\(edited.steps)")
        #expect(edited.steps.first?.subject == vhost)
        #expect(edited.steps.first.flatMap { if case .managed(let m) = $0.effect { m.content } else { nil } } == good)
        o.files[vhost] = good
        #expect(try plan().steps.isEmpty)
    }

    @Test("the key changes with the template's text, the kind of file and each value; a value of an unknown type has no key")
    func keys() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("desa-memo-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/nginx", withIntermediateDirectories: true)
        var edited = config
        edited.operatorTemplates = dir
        let plain = try Renderer(config: config, memo: RenderMemo())
        let values: [String: Any] = ["slug": "cileunyi-kulon", "aliases": ["a.desa.id"], "tls": ["hsts": false] as [String: Any]]
        let key = try #require(plain.memoKey("vhost", values, []))
        #expect(plain.memoKey("vhost", values, []) == key)
        #expect(try Renderer(config: config).memoKey("vhost", values, []) == key, "the same templates give the same key")
        #expect(plain.memoKey("pool", values, []) != key)
        #expect(plain.memoKey("vhost", values.merging(["slug": "cileunyi-wetan"]) { $1 }, []) != key)
        #expect(plain.memoKey("vhost", values.merging(["aliases": ["a.desa.id", "b.desa.id"]]) { $1 }, []) != key)
        #expect(plain.memoKey("vhost", values.merging(["tls": ["hsts": true] as [String: Any]]) { $1 }, []) != key)
        #expect(plain.memoKey("vhost", values, ["x"]) != key)
        // No two inputs write the same bytes: ["ab"] is not ["a", "b"].
        #expect(plain.memoKey("vhost", ["aliases": ["ab"]], []) != plain.memoKey("vhost", ["aliases": ["a", "b"]], []))
        #expect(plain.memoKey("vhost", ["x": 1.5], []) == nil)

        // An operator's template of the same name: another fingerprint, so every key differs.
        let builtIn = try #require(AtomicFiles.read(config.templates + "/nginx/default.conf.mustache"))
        try (builtIn + "\n# edited\n").write(toFile: dir + "/nginx/default.conf.mustache", atomically: true, encoding: .utf8)
        #expect(try Renderer(config: edited).memoKey("vhost", values, []) != key)
    }
}
