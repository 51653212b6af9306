import Foundation
import Testing
@testable import Provisioner

@Suite("Naming: slugs and the name grammar")
struct NamingTests {
    static let lists: [(String, String)] = [(Support.bandung, "32.04"), (Support.purbalingga, "33.03")]

    func assignAll(_ villages: [Village], existing: [SlugAssigner.Existing] = []) throws -> [VillageCode: String] {
        try SlugAssigner.assign(villages.map { .init(code: $0.code, name: $0.name, district: $0.district) }, existing: existing)
    }

    @Test("every village of both official lists gets a valid, unique label", arguments: lists)
    func officialListsGiveUniqueValidSlugs(path: String, regency: String) throws {
        let villages = try Support.villages(path, regency: regency)
        #expect(villages.count == (regency == "32.04" ? 280 : 239))
        let slugs = try assignAll(villages)
        #expect(slugs.count == villages.count)
        #expect(Set(slugs.values).count == villages.count, "slugs must be unique")
        for (code, slug) in slugs {
            #expect(throws: Never.self, "\(code) -> \(slug)") { try Names.validateSlug(slug) }
            #expect(slug.count <= 63)
        }
    }

    @Test("the result does not depend on row order", arguments: lists)
    func stableUnderShuffle(path: String, regency: String) throws {
        let villages = try Support.villages(path, regency: regency)
        let reference = try assignAll(villages)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5 {
            #expect(try assignAll(villages.shuffled(using: &rng)) == reference)
        }
        #expect(try assignAll(villages.reversed()) == reference)
    }

    @Test("a slug once assigned never changes; a later namesake takes the suffix")
    func reimportKeepsSlugs() throws {
        let all = try Support.villages(Support.bandung, regency: "32.04")
        // Import every village except one Mekarsari and one Cimekar-like unique name, then add them later.
        let late = all.filter { $0.code.value == "32.04.38.2007" || $0.code.value == "32.04.05.2003" }
        let early = all.filter { v in !late.contains(v) }
        let first = try assignAll(early)
        let existing = early.map { SlugAssigner.Existing(code: $0.code, name: $0.name, slug: first[$0.code]!) }
        let second = try assignAll(late, existing: existing)
        #expect(Set(first.values).isDisjoint(with: Set(second.values)))

        // A newcomer whose name an online village already has: the old one keeps the bare label.
        let old = SlugAssigner.Existing(code: try VillageCode("32.04.05.2003"), name: "Cimekar", slug: "cimekar")
        let newcomer = Village(code: try VillageCode("32.04.06.2099"), name: "Cimekar", district: "Cileunyi Baru")
        let got = try assignAll([newcomer], existing: [old])
        #expect(got[newcomer.code] == "cimekar-cileunyi-baru")
    }

    @Test("re-importing the whole list into a state database keeps every slug and adds nothing")
    func realReimport() throws {
        let dir = "/var/tmp/desa-reimport-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = Sandbox.Options(dir: dir)
        o.templates = Support.templates
        let engine = try Engine(config: Sandbox.config(for: o), journal: NullJournal())
        let list = try VillageList.read(path: Support.bandung, regency: "32.04")
        let first = try engine.store.queue.write { db in try engine.insertVillages(db, list.villages, template: "default", php: "8.2") }
        #expect(first.filter { $0.action == .create }.count == 280)
        let before = try engine.store.tenants()
        let again = try engine.store.queue.write { db in
            try engine.insertVillages(db, list.villages.shuffled(), template: "static", php: "8.2")
        }
        #expect(again.allSatisfy { $0.action == .exists }, "\(again.filter { $0.action != .exists }.map(\.code))")
        #expect(Dictionary(uniqueKeysWithValues: again.map { ($0.code!, $0.slug!) })
                == Dictionary(uniqueKeysWithValues: first.map { ($0.code!, $0.slug!) }))
        #expect(try engine.store.tenants() == before, "no row changed")
    }

    @Test("a slug taken even with the last four code digits falls back to all ten")
    func tenDigitFallback() throws {
        let a = Village(code: try VillageCode("32.04.10.1001"), name: "Padasuka", district: "Cimenyan")
        let b = Village(code: try VillageCode("32.04.10.2005"), name: "Padasuka", district: "Cimenyan")
        let squatter = SlugAssigner.Existing(code: try VillageCode("32.04.99.2001"), name: "Lain", slug: "padasuka-cimenyan-1001")
        let slugs = try assignAll([a, b], existing: [squatter])
        #expect(slugs[a.code] == "padasuka-cimenyan-3204101001")
        #expect(slugs[b.code] == "padasuka-cimenyan-2005")
    }

    @Test("names that repeat in Kab. Bandung all get their kecamatan")
    func repeatedNames() throws {
        let villages = try Support.villages(Support.bandung, regency: "32.04")
        let slugs = try assignAll(villages)
        let mekarsari = villages.filter { $0.name == "Mekarsari" }
        #expect(mekarsari.count == 4)
        for v in mekarsari {
            #expect(slugs[v.code] == "mekarsari-" + (try Names.slugify(v.district)))
        }
        let unique = villages.first { $0.name == "Cileunyi Kulon" }!
        #expect(slugs[unique.code] == "cileunyi-kulon")
    }

    @Test("the same name twice in one kecamatan falls back to the code's last four digits")
    func sameNameSameDistrict() throws {
        let a = Village(code: try VillageCode("32.04.10.1001"), name: "Padasuka", district: "Cimenyan")
        let b = Village(code: try VillageCode("32.04.10.2005"), name: "Padasuka", district: "Cimenyan")
        let c = Village(code: try VillageCode("32.04.11.2001"), name: "Padasuka", district: "Cibeunying")
        let slugs = try assignAll([a, b, c])
        #expect(slugs[a.code] == "padasuka-cimenyan-1001")
        #expect(slugs[b.code] == "padasuka-cimenyan-2005")
        #expect(slugs[c.code] == "padasuka-cibeunying")
    }

    @Test("odd names from the national list give valid labels", arguments: [
        ("Way 'U'", "way-u"),
        ("Perk. Tolan I/II", "perk-tolan-i-ii"),
        ("Lubuk Pakam I,II", "lubuk-pakam-i-ii"),
        ("Kupa-kupa Selatan (Halehe)", "kupa-kupa-selatan-halehe"),
        ("Regapu’u", "regapuu"),
        ("RD. PJKA", "rd-pjka"),
        ("Cileunyi Kulon", "cileunyi-kulon"),
        ("Sukamaju", "sukamaju"),
        ("Désa Ñusa", "desa-nusa"),
        ("Gampong Blang 2", "gampong-blang-2"),
    ])
    func oddNames(name: String, slug: String) throws {
        #expect(try Names.slugify(name) == slug)
    }

    @Test("a 44-letter name stays within 63 characters even with its kecamatan")
    func longNames() throws {
        let name = "Kampung Sangat Panjang Sekali Namanya Di Sini"
        let v1 = Village(code: try VillageCode("32.04.01.2001"), name: name, district: "Kecamatan Yang Juga Amat Panjang")
        let v2 = Village(code: try VillageCode("32.04.01.2002"), name: name, district: "Kecamatan Yang Juga Amat Panjang")
        let slugs = try assignAll([v1, v2])
        for s in slugs.values { #expect(s.count <= 63); try Names.validateSlug(s) }
        #expect(Set(slugs.values).count == 2)
    }

    @Test("hostile names are rejected with a reason", arguments: [
        ("x; rm -rf /", "contains the character \";\""),
        ("../../etc", "must start with a letter or a digit"),
        ("a}server{", "contains the character \"}\""),
        ("Cimekar\nserver { }", "control character"),
        ("Cimekar\u{0}", "control character"),
        (String(repeating: "a", count: 300), "300 characters long"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("Желтый", "not a Latin letter"),
        ("ꦢꦺꦱ", "not a Latin letter"),
        ("<script>", "contains the character \"<\""),
        ("Desa $host", "contains the character \"$\""),
        ("a..b", "repeated"),
        ("Cimekar\u{202E}", "control character"),
    ])
    func hostileNames(name: String, reason: String) {
        let e = #expect(throws: DesaError.self, "\(Quote.show(name)) was accepted") { try Names.slugify(name) }
        #expect(e?.kind == .invalidInput)
        #expect(e?.message.contains(reason) == true, "message was: \(e?.message ?? "")")
    }

    @Test("slugs given with --slug must be DNS labels", arguments: [
        ("cileunyi-kulon", true), ("a", true), ("desa-2001", true),
        ("Cileunyi", false), ("-a", false), ("a-", false), ("a_b", false), ("ab--c", false),
        (String(repeating: "a", count: 64), false), ("", false), ("a b", false), ("../x", false),
    ])
    func slugGrammar(slug: String, valid: Bool) {
        #expect((try? Names.validateSlug(slug)) != nil ? valid : !valid, "\(slug)")
    }

    @Test("an override slug that is taken is refused")
    func overrideTaken() throws {
        let v = Village(code: try VillageCode("32.04.05.2009"), name: "Baru", district: "Cileunyi")
        let old = SlugAssigner.Existing(code: try VillageCode("32.04.05.2001"), name: "Cileunyi Kulon", slug: "cileunyi-kulon")
        #expect(throws: DesaError.self) {
            try SlugAssigner.assign([.init(code: v.code, name: v.name, district: v.district, override: "cileunyi-kulon")], existing: [old])
        }
    }

    @Test("alias domains", arguments: [
        ("cileunyikulon.desa.id", "cileunyikulon.desa.id"), ("CileunyiKulon.Desa.ID.", "cileunyikulon.desa.id"),
        ("xn--bcher-kva.desa.id", "xn--bcher-kva.desa.id"),
        ("desa", nil), ("a..desa.id", nil), ("-a.desa.id", nil), ("a b.desa.id", nil),
        ("a;b.desa.id", nil), ("*.desa.id", nil), ("1.2.3.4", nil), ("", nil),
    ] as [(String, String?)])
    func domains(raw: String, normalized: String?) {
        #expect((try? Names.validateDomain(raw)) == normalized, "\(raw)")
    }

    @Test("village codes", arguments: [
        ("32.04.05.2001", true), ("32.04.05.1001", true), ("32.04.05.3001", true),
        ("32.04.05.4001", false), ("32.4.05.2001", false), ("32.04.05.20011", false),
        ("32-04-05-2001", false), ("", false), ("32.04.05.200a", false), ("32.04.05", false),
    ])
    func codes(raw: String, valid: Bool) {
        #expect((try? VillageCode(raw)) != nil ? valid : !valid, "\(raw)")
    }
}
