import Foundation
import Testing
@testable import Provisioner

/// The whole product against real nginx and php-fpm on 127.0.0.1, through `desactl`.
/// Serialized: each test runs its own sandbox with hundreds of tenants.
@Suite("End to end: real nginx and PHP-FPM", .serialized)
struct EndToEndTests {
    @Test("all 280 Kab. Bandung villages serve their own page; PHP runs as each tenant and cannot read the others")
    func importAllOfBandung() throws {
        let h = try SandboxHarness("import")
        defer { h.destroy() }

        // A dry run lists what every row would get and writes nothing.
        let dry = try h.desactl("tenant", "import", Support.bandung, "--dry-run", "--json")
        try #require(dry.ok, "\(dry.message)")
        let preview = try JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as! [String: Any]
        let rows = preview["rows"] as! [[String: Any]]
        #expect(rows.count == 280)
        #expect(rows.first { $0["code"] as? String == "32.04.05.2001" }?["domain"] as? String == "cileunyi-kulon.bandungkab.go.id")
        #expect(try h.tenants().isEmpty)
        #expect(try h.users().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: try h.config().nginx.sitesDir).isEmpty)

        let r = try h.desactl("tenant", "import", Support.bandung)
        try #require(r.ok, "import failed: \(r.stdout) \(r.stderr)")

        let tenants = try h.tenants()
        #expect(tenants.count == 280)
        #expect(tenants.allSatisfy { $0["status"] as? String == "active" })
        for t in tenants {
            let resp = try h.get(t["domain"] as! String)
            #expect(resp.status == 200, "\(t["domain"]!)")
            #expect(resp.body.contains("<h1>\(t["kind"] as! String == "kelurahan" ? "Kelurahan" : "Desa") \(t["name"] as! String)</h1>"), "\(t["domain"]!)")
        }
        #expect(try h.users().count == 280)

        // PHP runs as the tenant's own user and cannot read another tenant's files.
        let a = tenants.first { $0["slug"] as? String == "cileunyi-kulon" }!
        let b = tenants.first { $0["slug"] as? String == "cinunuk" }!
        let probe = """
        <?php
        echo posix_getpwuid(posix_geteuid())['name'], "\\n";
        echo @file_get_contents('\(b["home"] as! String)/public/index.html') === false ? "denied" : "READ", "\\n";
        echo @scandir('\(b["home"] as! String)') === false ? "denied" : "LISTED", "\\n";
        echo function_exists('shell_exec') && !in_array('shell_exec', explode(',', ini_get('disable_functions'))) ? "SHELL" : "no-shell", "\\n";
        """
        try probe.write(toFile: (a["home"] as! String) + "/public/probe.php", atomically: true, encoding: .utf8)
        let out = try h.get(a["domain"] as! String, "/probe.php")
        #expect(out.status == 200)
        let lines = out.body.split(separator: "\n").map(String.init)
        #expect(lines == [a["user"] as! String, "denied", "denied", "no-shell"], "\(out.body)")

        // Converged: nothing to do, and importing again changes nothing.
        let plan = try h.desactl("plan")
        #expect(plan.stdout.contains("Nothing to do"), "\(plan.stdout)")
        let again = try h.desactl("tenant", "import", Support.bandung)
        #expect(again.ok)
        #expect(again.stdout.contains("0 new villages, 280 already present"), "\(again.stdout)")
        #expect(try h.nginxTest().ok)
    }

    @Test("suspend answers 503, resume restores, aliases serve, delete removes user, pool and vhost and archives the files")
    func lifecycle() throws {
        let h = try SandboxHarness("life")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(12)).ok)
        let host = "cileunyi-kulon.bandungkab.go.id"
        #expect(try h.get(host).status == 200)

        #expect(try h.desactl("tenant", "suspend", "cileunyi-kulon").ok)
        let suspended = try h.get(host)
        #expect(suspended.status == 503)
        #expect(suspended.body.contains("ditangguhkan") && suspended.body.contains("Cileunyi Kulon"))
        let c = try h.config()
        #expect(FileManager.default.fileExists(atPath: c.webRoot + "/cileunyi-kulon/public/index.html"), "files stay")
        #expect(try h.get("cileunyi-wetan.bandungkab.go.id").status == 200, "neighbours keep serving")

        #expect(try h.desactl("tenant", "resume", "32.04.05.2001").ok)
        #expect(try h.get(host).status == 200)

        #expect(try h.desactl("tenant", "alias", "add", "cileunyi-kulon", "CileunyiKulon.desa.id").ok)
        let viaAlias = try h.get("cileunyikulon.desa.id")
        #expect(viaAlias.status == 200 && viaAlias.body.contains("Cileunyi Kulon"))
        let taken = try h.desactl("tenant", "alias", "add", "cileunyi-wetan", "cileunyikulon.desa.id")
        #expect(!taken.ok && taken.stderr.contains("already an alias"))
        #expect(try h.desactl("tenant", "alias", "remove", "cileunyi-kulon", "cileunyikulon.desa.id").ok)
        #expect(try h.get("cileunyikulon.desa.id").status == 421)

        let user = h.prefix + "3204052001"
        #expect(getpwnam(user) != nil)
        let del = try h.desactl("tenant", "delete", "cileunyi-kulon")
        #expect(del.ok, "\(del.message)")
        #expect(getpwnam(user) == nil, "user removed")
        #expect(!FileManager.default.fileExists(atPath: c.nginx.sitesDir + "/cileunyi-kulon.conf"))
        #expect(!FileManager.default.fileExists(atPath: c.php.versions["8.2"]!.poolDir + "/\(user).conf"))
        #expect(!FileManager.default.fileExists(atPath: c.webRoot + "/cileunyi-kulon"))
        let archived = try FileManager.default.contentsOfDirectory(atPath: c.archiveDir)
        #expect(archived.count == 1 && archived[0].hasPrefix("cileunyi-kulon-3204052001-"))
        #expect(FileManager.default.fileExists(atPath: c.archiveDir + "/" + archived[0] + "/public/index.html"))
        #expect(try h.get(host).status == 421)
        #expect(try h.get("cileunyi-wetan.bandungkab.go.id").status == 200)
        let shown = try JSONSerialization.jsonObject(with: Data(try h.desactl("tenant", "show", "cileunyi-kulon", "--json").stdout.utf8)) as! [String: Any]
        #expect(shown["status"] as? String == "deleted")
        #expect((shown["created_at"] as? String).flatMap(Timestamp.parse) != nil, "created_at is RFC 3339")

        // Purge removes the files outright.
        #expect(try h.desactl("tenant", "delete", "cileunyi-wetan", "--purge").ok)
        #expect(try FileManager.default.contentsOfDirectory(atPath: c.archiveDir).count == 1)
        #expect(!FileManager.default.fileExists(atPath: c.webRoot + "/cileunyi-wetan"))

        // A deleted village comes back with its old slug.
        #expect(try h.desactl("tenant", "create", "32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi").ok)
        #expect(try h.get(host).status == 200)
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"))
    }

    @Test("an operator template that renders invalid nginx fails only its tenant, with nginx's message")
    func brokenTemplateFailsOnlyItsTenant() throws {
        let h = try SandboxHarness("broken")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(30)).ok)
        let ops = h.dir + "/operator-templates/nginx"
        try FileManager.default.createDirectory(atPath: ops, withIntermediateDirectories: true)
        try """
        server {
            listen {{listen}};
            server_name {{server_names}};
            root {{public_root}};
        {{> partials/hardening}}
            this_is_not_a_directive on;
        }
        """.write(toFile: ops + "/broken.conf.mustache", atomically: true, encoding: .utf8)
        var toml = Support.read(h.configPath)
        toml = toml.replacingOccurrences(of: "operator_templates = \"\"",
                                         with: "operator_templates = \"\(h.dir)/operator-templates\"")
        try toml.write(toFile: h.configPath, atomically: true, encoding: .utf8)

        let r = try h.desactl("tenant", "set", "cimekar", "--template", "broken")
        #expect(r.status == 1)
        #expect(r.stdout.contains("FAILED cimekar"))
        #expect(r.stdout.contains("unknown directive \"this_is_not_a_directive\""))
        #expect(r.stdout.contains("/nginx/sites/cimekar.conf"), "names the file nginx points at")
        let shown = try JSONSerialization.jsonObject(with: Data(try h.desactl("tenant", "show", "cimekar", "--json").stdout.utf8)) as! [String: Any]
        #expect(shown["status"] as? String == "failed")
        #expect((shown["reason"] as? String)?.contains("this_is_not_a_directive") == true)

        #expect(try h.nginxTest().ok, "nginx is never left with a config that fails nginx -t")
        for t in try h.tenants() where t["slug"] as? String != "cimekar" {
            #expect(try h.get(t["domain"] as! String).status == 200, "\(t["slug"]!) keeps serving")
            #expect(t["status"] as? String == "active")
        }
        // The failing tenant keeps its previous, working config.
        #expect(try h.get("cimekar.bandungkab.go.id").status == 200)

        // Back to a good template: it converges.
        #expect(try h.desactl("tenant", "set", "cimekar", "--template", "opensid").ok)
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"))
    }

    @Test("kill -9 in the middle of importing 280 villages, then the same import again, converges")
    func killedImportConverges() throws {
        let h = try SandboxHarness("kill")
        defer { h.destroy() }
        for delay in [0.25, 0.6, 1.0] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Support.desactl)
            p.arguments = ["--config", h.configPath, "tenant", "import", Support.bandung]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            Thread.sleep(forTimeInterval: delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(try h.nginxTest().ok, "after kill at \(delay)s nginx -t still passes")
            // No tenant is marked active that does not serve.
            for t in try h.tenants() where t["status"] as? String == "active" {
                #expect(try h.get(t["domain"] as! String).status == 200, "\(t["slug"]!) is active but does not serve")
            }
        }
        let r = try h.desactl("tenant", "import", Support.bandung)
        #expect(r.ok, "\(r.stdout) \(r.stderr)")
        let tenants = try h.tenants()
        #expect(tenants.count == 280)
        #expect(tenants.allSatisfy { $0["status"] as? String == "active" })
        let c = try h.config()
        #expect(try h.users().count == 280, "no orphan or missing users")
        #expect(try FileManager.default.contentsOfDirectory(atPath: c.nginx.sitesDir).filter { $0.hasSuffix(".conf") && !$0.hasPrefix("_") }.count == 280)
        #expect(try FileManager.default.contentsOfDirectory(atPath: c.php.versions["8.2"]!.poolDir).filter { $0.hasSuffix(".conf") }.count == 280)
        // The portal lists every village once, whatever the kill interrupted.
        #expect(Support.read(c.portalRoot + "/index.html").components(separatedBy: "<li data-cari=").count - 1 == 280)
        #expect(!FileManager.default.fileExists(atPath: c.rollbackDir + "/manifest.json"))
        #expect(try h.desactl("plan").stdout.contains("Nothing to do"))
        for t in tenants { #expect(try h.get(t["domain"] as! String).status == 200) }
    }

    static let hostile: [[String]] = [
        ["32.04.05.2001", "--name", "x; rm -rf /", "--district", "Cileunyi"],
        ["32.04.05.2001", "--name", "../../etc", "--district", "Cileunyi"],
        ["32.04.05.2001", "--name", "a}server{", "--district", "Cileunyi"],
        ["32.04.05.2001", "--name", "Cimekar\nserver {", "--district", "Cileunyi"],
        ["32.04.05.2001", "--name", String(repeating: "a", count: 300), "--district", "Cileunyi"],
        ["32.04.05.2001", "--name", "", "--district", "Cileunyi"],
        ["32.04.05.2001", "--name", "Желтый", "--district", "Cileunyi"],
        ["32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi", "--slug", "../x"],
        ["33.03.01.2001", "--name", "Kedungbenda", "--district", "Kemangkon"],
        ["32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi", "--template", "../../etc/passwd"],
        ["32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "x; reboot"],
        ["32.04.05.2001", "--name", "Cileunyi Kulon", "--district", "Cileunyi", "--php", "8.2; id"],
    ]

    @Test("hostile names and broken rows are rejected and nothing is written")
    func hostileInput() throws {
        let h = try SandboxHarness("hostile")
        defer { h.destroy() }
        for args in Self.hostile {
            let r = try h.desactl(["tenant", "create"] + args)
            #expect(r.status == 2, "\(args): \(r.stdout) \(r.stderr)")
            #expect(r.stderr.hasPrefix("desactl: error: "), "\(args)")
        }
        #expect(try h.tenants().isEmpty)
        #expect(try h.users().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: try h.config().nginx.sitesDir).isEmpty)

        // A list with one broken row imports nothing, and says which row.
        let csv = h.dir + "/broken.csv"
        try (Support.read(Support.bandung).split(separator: "\n").prefix(6).joined(separator: "\n")
             + "\n32.04.05.2099,\"Unterminated,32.04.05,Cileunyi,32.04,Kabupaten Bandung,32,Jawa Barat,desa\n")
            .write(toFile: csv, atomically: true, encoding: .utf8)
        let imp = try h.desactl("tenant", "import", csv)
        #expect(imp.status == 2, "invalid input")
        #expect(imp.stdout.contains("line 7: rejected"), "\(imp.stdout)")
        #expect(try h.tenants().isEmpty)
    }
}
