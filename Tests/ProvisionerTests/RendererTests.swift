import Foundation
import Testing
@testable import Provisioner

/// Golden files: the rendered nginx server blocks, PHP-FPM pool and starter page for a
/// fixed tenant. Regenerate with DESA_UPDATE_GOLDEN=1 swift test --filter Renderer,
/// then read the diff.
@Suite("Rendered configs (golden files)")
struct RendererTests {
    static let dir = "/var/tmp/desa-golden"

    /// The golden files' config: paths under `dir` appear in them, but nothing is written
    /// there; tests that need the disk pass a directory of their own.
    static func config(dir: String = dir) -> Config {
        var o = Sandbox.Options(dir: dir)
        o.templates = Support.templates
        o.userPrefix = "dgold"
        return Sandbox.config(for: o)
    }

    static func tenant(template: String = "default", desired: Tenant.Desired = .active) throws -> Tenant {
        let v = try Village.validated(code: "32.04.05.2001", name: "Cileunyi Kulon", district: "Cileunyi", regency: "32.04")
        var t = Tenant(village: v, slug: "cileunyi-kulon", template: template, php: "8.2", uid: 310_000,
                       now: Date(timeIntervalSince1970: 0))
        t.desired = desired
        return t
    }

    static let cases: [(String, String, Tenant.Desired)] = [
        ("vhost-default", "default", .active), ("vhost-opensid", "opensid", .active),
        ("vhost-static", "static", .active), ("vhost-suspended", "default", .suspended),
    ]

    func check(_ name: String, _ rendered: String) throws {
        let path = Support.golden + "/" + name + ".golden"
        if ProcessInfo.processInfo.environment["DESA_UPDATE_GOLDEN"] == "1" {
            try rendered.write(toFile: path, atomically: true, encoding: .utf8)
        }
        let expected = try #require(AtomicFiles.read(path), "missing golden file \(path); run with DESA_UPDATE_GOLDEN=1")
        #expect(rendered == expected, "\(name) differs from \(path)")
    }

    @Test("nginx server blocks", arguments: cases)
    func vhosts(name: String, template: String, desired: Tenant.Desired) throws {
        let r = try Renderer(config: Self.config())
        try check(name, try r.vhost(try Self.tenant(template: template, desired: desired), aliases: ["cileunyikulon.desa.id"]))
    }

    @Test("PHP-FPM pool and starter page")
    func poolAndStarter() throws {
        let r = try Renderer(config: Self.config())
        let t = try Self.tenant()
        try check("pool", try r.pool(t, aliases: []))
        try check("starter", try r.starterPage(t, aliases: []))
    }

    @Test("every managed file starts with the ownership header")
    func headers() throws {
        let r = try Renderer(config: Self.config())
        let t = try Self.tenant()
        #expect(Renderer.managedTenant(ofFileContent: try r.vhost(t, aliases: [])[...]) == t.code)
        #expect(Renderer.managedTenant(ofFileContent: try r.pool(t, aliases: [])[...]) == t.code)
        #expect(Renderer.managedTenant(ofFileContent: "server { }\n") == nil)
    }

    @Test("a suspended page cannot break out of its nginx string")
    func nginxString() {
        #expect(Renderer.nginxString(#"a "quoted" \ $host"#) == #"a \"quoted\" \\ &#36;host"#)
    }

    @Test("an unknown or reserved site template is refused")
    func unknownTemplate() throws {
        let r = try Renderer(config: Self.config())
        #expect(r.siteTemplates == ["default", "opensid", "static"])
        #expect(throws: DesaError.self) { try r.checkSiteTemplate("nope") }
        #expect(throws: DesaError.self) { try r.checkSiteTemplate("suspended") }
        #expect(throws: DesaError.self) { try r.checkSiteTemplate("../nginx/default") }
    }

    /// The golden configs are not just stable, they are valid: real nginx and php-fpm accept them.
    @Test("real nginx -t and php-fpm -t accept every built-in template")
    func realCheckersAccept() throws {
        // A directory of this run's own: two runs at once must not collide.
        let dir = "/var/tmp/desa-golden-\(UUID().uuidString.prefix(8))"
        let c = Self.config(dir: dir)
        let r = try Renderer(config: c)
        let home = c.webRoot + "/cileunyi-kulon"
        for d in [c.tenantLogRoot + "/cileunyi-kulon", home + "/public", c.nginx.sitesDir, c.php.versions["8.2"]!.poolDir, c.logDir, dir + "/nginx/tmp"] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Sandbox.prepare(c)
        let runner = SystemProcessRunner()
        for (i, (_, template, desired)) in Self.cases.enumerated() {
            var t = try Self.tenant(template: template, desired: desired)
            t.slug = "t\(i)"
            try FileManager.default.createDirectory(atPath: c.tenantLogRoot + "/t\(i)", withIntermediateDirectories: true)
            try AtomicFiles.write([FileWrite(path: c.nginx.sitesDir + "/t\(i).conf", content: try r.vhost(t, aliases: ["t\(i).desa.id"]))])
        }
        let nginx = try ServiceControl(config: c, runner: runner).test(.nginx(c))
        #expect(nginx.ok, "\(nginx.message)")
        // The pool names a user; www-data exists everywhere nginx is installed.
        let pool = try r.pool(try Self.tenant(), aliases: []).replacingOccurrences(of: "dgold3204052001\n", with: "www-data\n")
        try AtomicFiles.write([FileWrite(path: c.php.versions["8.2"]!.poolDir + "/p.conf", content: pool)])
        let php = try ServiceControl(config: c, runner: runner).test(.phpFPM("8.2", c))
        #expect(php.ok, "\(php.message)")
    }

    @Test("a site template without exactly one 'disable_symlinks if_not_owner;' is refused", arguments: [
        ("none", "server {\n    listen {{listen}};\n}\n", false),
        ("twice", "server {\n{{> partials/hardening}}\n    disable_symlinks if_not_owner;\n}\n", false),
        ("off", "server {\n    disable_symlinks off;\n}\n", false),
        ("weakened", "server {\n{{> partials/hardening}}\n  disable_symlinks off;\n}\n", false),
        ("good", "server {\n    listen {{listen}};\n{{> partials/hardening}}\n}\n", true),
        ("indented", "server {\n\t disable_symlinks if_not_owner;  \r\n}\n", true),
    ])
    func hardeningRequired(name: String, template: String, accepted: Bool) throws {
        let ops = FileManager.default.temporaryDirectory.appendingPathComponent("desa-hardening-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: ops + "/nginx", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: ops) }
        try template.write(toFile: ops + "/nginx/\(name).conf.mustache", atomically: true, encoding: .utf8)
        var c = Self.config()
        c.operatorTemplates = ops
        let t = try Self.tenant(template: name)
        if accepted {
            #expect(try Renderer(config: c).vhost(t, aliases: []).contains("disable_symlinks if_not_owner;"))
        } else {
            #expect(throws: DesaError.self) { try Renderer(config: c).vhost(t, aliases: []) }
        }
    }
}
