import Foundation
import Testing
@testable import Provisioner

/// The portal as a citizen sees it: Debian's headless chromium (scripts/browser.py, over
/// the DevTools protocol) against the sandbox's real nginx, after real sweeps.
@Suite("Portal in a real browser", .serialized)
struct PortalBrowserTests {
    static let chromium = "/usr/bin/chromium"
    /// Where the screenshots are kept (inside .build, which git ignores).
    static let artifacts = Support.packageRoot.path + "/.build/test-artifacts/portal"

    struct Look {
        var json: [String: Any]
        var loaded: [String: Any] { json["loaded"] as? [String: Any] ?? [:] }
        var typed: [String: Any] { json["typed"] as? [String: Any] ?? [:] }
        var noScript: [String: Any] { json["no_script"] as? [String: Any] ?? [:] }
        var requests: [String] { json["requests"] as? [String] ?? [] }
        var errors: [String] { json["console_errors"] as? [String] ?? [] }
        func villages(_ part: [String: Any]) -> [[String: Any]] { part["villages"] as? [[String: Any]] ?? [] }
    }

    func look(_ h: SandboxHarness, type text: String? = nil, shots: String? = nil) throws -> Look {
        let c = try h.config()
        var args = ["/usr/bin/python3", Support.packageRoot.path + "/scripts/browser.py",
                    "http://\(c.portalHost):\(h.port)/", "--map", c.portalHost]
        if let text { args += ["--type", text] }
        if let shots { args += ["--shots", shots] }
        let r = try h.runner.run(args)
        try #require(r.ok, "browser.py: \(r.message)")
        return Look(json: try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]))
    }

    @Test("chromium: the 280 villages under their kecamatan, typing filters, a village down after a sweep and up after repair; no console error, no request off 127.0.0.1")
    func portal() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.chromium), "chromium is not installed (scripts/install-deps.sh installs it)")
        let h = try SandboxHarness("portal")
        defer { h.destroy() }
        let imported = try h.desactl("tenant", "import", Support.bandung)
        try #require(imported.ok, "\(imported.message)")
        let c = try h.config()
        let sweep = try h.desactl("health", "--now")
        #expect(sweep.status == 0, "\(sweep.message)")

        try? FileManager.default.removeItem(atPath: Self.artifacts)
        let first = try look(h, type: "cileunyi", shots: Self.artifacts)
        let loaded = first.loaded
        // Every village once, under its own kecamatan, up after the sweep.
        let villages = try Support.villages(Support.bandung, regency: "32.04")
        let expected = Set(villages.map { "\($0.district)|\($0.kind == .kelurahan ? "Kelurahan" : "Desa") \($0.name)" })
        let shown = first.villages(loaded).map { "\($0["kecamatan"] as? String ?? "")|\($0["name"] as? String ?? "")" }
        #expect(shown.count == 280 && Set(shown) == expected, "missing: \(expected.subtracting(shown).sorted().prefix(5))")
        #expect(loaded["sections"] as? Int == Set(villages.map(\.district)).count)
        #expect(first.villages(loaded).allSatisfy { $0["state"] as? String == "up" }, "not all up after a clean sweep")
        #expect(loaded["lang"] as? String == "id" && loaded["form_shown"] as? Bool == true)
        let hrefs = first.villages(loaded).compactMap { $0["href"] as? String }
        #expect(hrefs.allSatisfy { $0.hasPrefix("http://") && $0.hasSuffix(".\(c.domain):\(h.port)/") })
        let fcp = loaded["fcp"] as? Double ?? .infinity
        #expect(fcp < 1000, "first contentful paint after \(fcp) ms")

        // Typing filters: exactly the villages whose name or kecamatan has the word.
        let typed = first.typed
        let hits = villages.filter { ($0.name + " " + $0.district).lowercased().contains("cileunyi") }
        #expect(typed["visible"] as? Int == hits.count && hits.count > 0, "\(typed["visible"] ?? "none") shown, \(hits.count) expected")
        #expect(first.villages(typed).allSatisfy { v in
            ((v["name"] as? String ?? "") + " " + (v["kecamatan"] as? String ?? "")).lowercased().contains("cileunyi")
        })
        #expect((typed["visible_sections"] as? Int ?? 0) < (loaded["sections"] as? Int ?? 0))
        #expect((typed["said"] as? String ?? "").hasPrefix("\(hits.count) desa/kelurahan cocok"), "\(typed["said"] ?? "")")
        #expect(first.json["focused"] as? String == "cari", "the search box takes the keyboard")

        // Without JavaScript: the whole list, no search box.
        #expect(first.noScript["visible"] as? Int == 280 && first.noScript["form_shown"] as? Bool == false, "\(first.noScript)")

        // Nothing but the portal was asked for, and nothing complained.
        #expect(!first.requests.isEmpty)
        #expect(first.requests.allSatisfy { $0.hasPrefix("http://\(c.portalHost):\(h.port)/") }, "\(first.requests)")
        #expect(first.errors.isEmpty, "console: \(first.errors)")
        for shot in ["portal-desktop.png", "portal-phone.png"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: Self.artifacts + "/" + shot)[.size] as? Int) ?? 0
            #expect(size > 10_000, "\(shot): \(size) bytes")
        }

        // A village's pool removed by hand: down after the next sweep, up after repair.
        let tenants = try StateStore(path: c.databasePath).tenants()
        let victim = try #require(tenants.first { $0.name == "Cinunuk" })
        let php = try #require(c.php.versions[victim.php])
        try FileManager.default.removeItem(atPath: php.poolDir + "/" + victim.userName(prefix: c.userPrefix) + ".conf")
        let master = try #require(Int32((AtomicFiles.read(php.pidFile) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(master, SIGUSR2)
        let socket = try victim.phpSocket(c)
        for _ in 0..<100 where FileManager.default.fileExists(atPath: socket) { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try h.desactl("health", "--now").status == 1)
        func state(_ l: Look) -> [String: String] {
            Dictionary(l.villages(l.loaded).map { ($0["name"] as? String ?? "", $0["state"] as? String ?? "") }, uniquingKeysWith: { a, _ in a })
        }
        let down = try look(h)
        #expect(state(down)["Desa Cinunuk"] == "down")
        #expect(state(down).values.filter { $0 == "down" }.count == 1)
        #expect(down.errors.isEmpty, "console: \(down.errors)")

        #expect(try h.desactl("apply").ok)
        #expect(try h.desactl("health", "--now").status == 0)
        let repaired = try look(h)
        #expect(state(repaired)["Desa Cinunuk"] == "up")
        #expect(state(repaired).values.allSatisfy { $0 == "up" })
        print("PortalBrowserTests: first contentful paint \(Int(fcp)) ms; screenshots in \(Self.artifacts)")
    }
}
