import Foundation
import Testing
@testable import Provisioner

/// The portal's page and server block as rendered from tenants and their health, without
/// a server (the browser test in EndToEnd/PortalBrowserTests serves them for real).
@Suite("Portal page")
struct PortalTests {
    static func config() -> Config { RendererTests.config() }

    static func tenants(_ villages: [Village]) -> [Tenant] {
        villages.enumerated().map { i, v in
            Tenant(village: v, slug: (try? Names.slugify(v.name)).map { "\($0)-\(i)" } ?? "v\(i)", template: "default",
                   php: "8.2", uid: 310_000 + i, now: Date(timeIntervalSince1970: 0))
        }
    }

    static func bandung() throws -> [Tenant] { tenants(try Support.villages(Support.bandung, regency: "32.04")) }

    func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    func between(_ text: String, _ open: String, _ close: String) -> String? {
        guard let a = text.range(of: open), let b = text.range(of: close, range: a.upperBound..<text.endIndex) else { return nil }
        return String(text[a.upperBound..<b.lowerBound])
    }

    @Test("Kab. Bandung's 280 villages: all listed under their kecamatan, under 150 KB, nothing fetched from another host")
    func bandungPage() throws {
        let c = Self.config()
        let r = try Renderer(config: c)
        let ts = try Self.bandung()
        let html = try PortalPage(config: c, tenants: ts, health: [:], https: []).render(r)
        #expect(ts.count == 280)
        #expect(html.utf8.count < 150_000, "the page is \(html.utf8.count) bytes")
        #expect(count("<li data-cari=", in: html) == 280)
        let districts = Set(ts.map(\.districtName))
        #expect(count("<section data-kecamatan=", in: html) == districts.count)
        // Every village under its own kecamatan's heading.
        for t in ts.prefix(40) {
            let section = try #require(between(html, "<section data-kecamatan=\"\(t.districtName)\"", "</section>"))
            #expect(section.contains(">\(t.name)</bdi></a>"), "\(t.name) is not under \(t.districtName)")
        }
        // Nothing loaded: no src, stylesheet link, @import or url(); every link is a village's.
        for needle in ["src=", "<link", "@import", "url(", "//fonts", "cdn"] {
            #expect(!html.lowercased().contains(needle), "the page has \(needle)")
        }
        let hrefs = html.components(separatedBy: "href=\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
        #expect(hrefs.count == 280)
        for h in hrefs { #expect(h.hasPrefix("http://") && h.contains("." + c.domain + ":"), "\(h)") }
        #expect(html.contains("<html lang=\"id\">"))
        #expect(html.contains("<label for=\"cari\">"))
    }

    @Test("the server block allows exactly the page's inline script and style, and nothing else")
    func csp() throws {
        let c = Self.config()
        let r = try Renderer(config: c)
        let html = try PortalPage(config: c, tenants: try Self.bandung(), health: [:], https: []).render(r)
        let conf = try PortalCapability.conf(c, r, tls: [])
        let script = try #require(between(html, "<script>", "</script>"))
        let style = try #require(between(html, "<style>", "</style>"))
        #expect(count("<script", in: html) == 1 && count("<style", in: html) == 1)
        #expect(conf.contains("script-src \(PortalPage.cspHash(script));"))
        #expect(conf.contains("style-src \(PortalPage.cspHash(style));"))
        #expect(conf.contains("default-src 'none'"))
        #expect(conf.contains("server_name \(c.portalHost);"))
        #expect(conf.hasPrefix(PortalCapability.confHeader + "\n"))
    }

    @Test("a hostile village name (quotes, <script>, an RTL mark) is shown as text, never as markup")
    func hostileName() throws {
        let c = Self.config()
        var ts = Array(try Self.bandung().prefix(3))
        let name = "Suka\"maju' <script>alert(1)</script>\u{202E}gpj.exe & <img src=x onerror=alert(2)>"
        ts[0].name = name
        ts[1].districtName = "</section><script>alert(3)</script>"
        let html = try PortalPage(config: c, tenants: ts, health: [:], https: []).render(try Renderer(config: c))
        #expect(count("<script", in: html) == 1, "a name became a script")
        #expect(!html.contains("<img"))
        #expect(!html.contains("alert(1)</script>") && !html.contains("alert(3)</script>"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(html.contains("Suka&quot;maju"))
        // The RTL override stays inside its own <bdi>, so it cannot reorder what follows.
        #expect(html.contains("&lt;img src=x onerror=alert(2)&gt;</bdi></a>"))
        #expect(html.contains("\u{202E}"))
        // The search key is plain words: the attribute holds no quote or angle bracket.
        #expect(PortalPage.searchKey(["Desa", name]) == "desa suka maju script alert 1 script gpj exe img src x onerror alert 2")
    }

    @Test("up, down or not checked from the checks that say a site serves; HTTPS links once a certificate serves the name")
    func states() throws {
        let c = Self.config()
        let ts = Array(try Self.bandung().prefix(3))
        let at = Date(timeIntervalSince1970: 1000)
        func s(_ code: String, _ check: HealthCheck, _ state: HealthState) -> CheckStatus {
            CheckStatus(subject: code, check: check, state: state, reason: "", since: at, checkedAt: at)
        }
        let health: [String: [HealthCheck: CheckStatus]] = [
            ts[0].code: [.http: s(ts[0].code, .http, .ok), "backup": s(ts[0].code, "backup", .down)],
            ts[1].code: [.http: s(ts[1].code, .http, .ok), .php: s(ts[1].code, .php, .down)],
        ]
        let page = PortalPage(config: c, tenants: ts, health: health, https: [ts[0].code])
        #expect(page.villages.map(\.up) == [true, false, nil], "a down backup is not a down site")
        #expect(page.villages[0].url == "https://\(ts[0].primaryDomain(c))\(c.tls.port == 443 ? "" : ":\(c.tls.port)")/")
        #expect(page.villages[1].url.hasPrefix("http://\(ts[1].primaryDomain(c)):"))
        let html = try page.render(try Renderer(config: c))
        #expect(html.contains("<span class=\"st up\">aktif</span>"))
        #expect(html.contains("<span class=\"st down\">sedang gangguan</span>"))
        #expect(html.contains("<span class=\"st unknown\">belum diperiksa</span>"))
        // Suspended villages are not listed.
        var suspended = ts
        suspended[2].desired = .suspended
        #expect(PortalPage(config: c, tenants: suspended, health: [:], https: []).villages.count == 2)
    }

    @Test("the portal's host is reserved: no village slug may take it")
    func reserved() throws {
        var c = Self.config()
        #expect(c.portalHost == "desa." + c.domain)
        #expect(c.portalReservedSlug == "desa")
        let code = try VillageCode("32.04.05.2001")
        let reserved = ["desa": "the regency's portal (portal.host)"]
        let slugs = try SlugAssigner.assign([.init(code: code, name: "Desa", district: "Cileunyi")], existing: [], reserved: reserved)
        #expect(slugs[code] == "desa-cileunyi")
        #expect(throws: DesaError.self) {
            try SlugAssigner.assign([.init(code: code, name: "Cileunyi Kulon", district: "Cileunyi", override: "desa")],
                                    existing: [], reserved: reserved)
        }
        c.portal.host = "portal.example.id"
        #expect(c.portalReservedSlug == nil)
        c.portal.host = "semua.desa." + c.domain
        #expect(c.portalReservedSlug == nil, "a name two labels deep is no village's slug")
    }

    @Test("bad [portal] values name the key")
    func settings() throws {
        for (toml, key) in [("host = \"Desa.Example.id\"", "portal.host"), ("host = \"a b\"", "portal.host"),
                            ("title = \"two\\nlines\"", "portal.title"), ("root = \"/srv/desa/x\"", "portal.root")] {
            let text = "[regency]\ncode = \"32.04\"\ndomain = \"bandungkab.go.id\"\n[portal]\n" + toml + "\n"
            #expect(throws: DesaError.self) { try Config.parse(text) }
            do { _ = try Config.parse(text) } catch let e as DesaError { #expect(e.message.contains(key), "\(e.message)") }
        }
    }

    @Test("a page on disk is current when its first line has the same inputs and its body is unaltered")
    func current() {
        let key = PortalCapability.pageHeader + " health=3 inputs=abc"
        let page = PortalCapability.withHeader(key, "<!DOCTYPE html>\n<p>280 desa</p>\n")
        #expect(PortalCapability.current(page, key: key))
        #expect(!PortalCapability.current(page, key: PortalCapability.pageHeader + " health=3 inputs=abd"), "other inputs")
        #expect(!PortalCapability.current(page, key: PortalCapability.pageHeader + " health=4 inputs=abc"), "newer health")
        #expect(!PortalCapability.current(page.replacingOccurrences(of: "280", with: "281"), key: key), "edited by hand")
        #expect(!PortalCapability.current(nil, key: key))
    }

    @Test("a page written from newer health is never replaced by one from older health")
    func stamps() throws {
        let dir = "/var/tmp/desa-portal-unit-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = RendererTests.config(dir: dir)
        c.stateDir = dir
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/index.html"
        let page = { (n: Int, body: String) in PortalCapability.pageHeader + " health=\(n) -->\n" + body }
        #expect(try WritePortalPage(path: path, content: page(5, "five")).write(c))
        #expect(try !WritePortalPage(path: path, content: page(4, "four")).write(c))
        #expect(AtomicFiles.read(path) == page(5, "five"))
        #expect(try WritePortalPage(path: path, content: page(6, "six")).write(c))
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o644)
        #expect(try WritePortalPage(path: path, content: nil).write(c))
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
