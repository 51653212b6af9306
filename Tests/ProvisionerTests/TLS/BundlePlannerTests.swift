import Foundation
import Testing
@testable import Provisioner

/// Tenants built from the real Kemendagri list of Kab. Bandung (280 villages), with the
/// slugs desa assigns: `<slug>.bandungkab.go.id`, plus `<slug without hyphens>.desa.id`.
enum CertFixtures {
    static let now = Date(timeIntervalSince1970: 1_760_000_000)
    static let day: TimeInterval = 86400

    static func bandung(aliases: Bool) throws -> [CertTenant] {
        let villages = try Support.villages(Support.bandung, regency: "32.04")
        let slugs = try SlugAssigner.assign(villages.map { .init(code: $0.code, name: $0.name, district: $0.district) }, existing: [])
        return villages.map { v in
            let slug = slugs[v.code]!
            var names = ["\(slug).bandungkab.go.id"]
            if aliases { names.append(slug.replacingOccurrences(of: "-", with: "") + ".desa.id") }
            return CertTenant(id: v.code.value, slug: slug, names: names)
        }
    }

    /// The bundles as stored after every planned order was issued at `issued`.
    static func issued(_ plan: BundlePlan, at issued: Date = now.addingTimeInterval(-day), lifetimeDays: Double = 90) -> [CertBundle] {
        plan.bundles.map { b in
            CertBundle(id: b.id, members: b.members,
                       certificate: CertificateInfo(names: b.names, notBefore: issued,
                                                    notAfter: issued.addingTimeInterval(lifetimeDays * day)))
        }
    }

    static func tenant(_ id: String, _ names: String...) -> CertTenant {
        CertTenant(id: id, slug: names.first.map { String($0.prefix(while: { $0 != "." })) } ?? id, names: names)
    }
}

@Suite("Bundling tenants' names into certificates")
struct BundlePlannerTests {
    let now = CertFixtures.now
    let planner = try! BundlePlanner()

    func everyNameOnce(_ plan: BundlePlan, _ tenants: [CertTenant]) {
        var seen: [String: String] = [:]
        for b in plan.bundles {
            #expect(b.names.count <= planner.maxNamesPerBundle, "\(b.id) has \(b.names.count) names")
            for n in b.names {
                #expect(seen[n] == nil, "\(n) is in \(seen[n] ?? "") and \(b.id)")
                seen[n] = b.id
            }
        }
        for t in tenants {
            let homes = Set(t.names.map { seen[$0] })
            #expect(homes.count == 1 && homes.first! != nil, "tenant \(t.id)'s names are split or missing: \(homes)")
        }
        #expect(seen.count == tenants.reduce(0) { $0 + $1.names.count })
    }

    @Test("Kab. Bandung's 280 villages with one name each fit in 3 certificates")
    func bandungOneName() throws {
        let tenants = try CertFixtures.bandung(aliases: false)
        #expect(tenants.count == 280)
        let plan = try planner.plan(tenants: tenants, existing: [], now: now)
        #expect(plan.refused.isEmpty)
        #expect(plan.bundles.map(\.id) == ["b001", "b002", "b003"])
        #expect(plan.bundles.map(\.names.count) == [100, 100, 80])
        #expect(plan.bundles.allSatisfy { $0.need == .issue && $0.isNew })
        everyNameOnce(plan, tenants)
    }

    @Test("with a desa.id alias each (560 names) they fit in ceil(560/100) = 6, each tenant's names together")
    func bandungWithAliases() throws {
        let tenants = try CertFixtures.bandung(aliases: true)
        let plan = try planner.plan(tenants: tenants, existing: [], now: now)
        #expect(plan.refused.isEmpty)
        #expect(plan.bundles.count == 6)
        #expect(plan.bundles.reduce(0) { $0 + $1.names.count } == 560)
        everyNameOnce(plan, tenants)
        // A tenant's names sit side by side, primary first.
        let b = plan.bundles[0]
        let first = tenants.first { $0.id == b.members[0] }!
        #expect(Array(b.names.prefix(2)) == first.names)
    }

    @Test("a village added when every bundle is full makes one new small bundle and touches nothing else")
    func addToFull() throws {
        let tenants = Array(try CertFixtures.bandung(aliases: false).prefix(200))
        let existing = CertFixtures.issued(try planner.plan(tenants: tenants, existing: [], now: now))
        #expect(existing.count == 2)
        let newcomer = CertFixtures.tenant("32.04.99.2001", "desa-baru.bandungkab.go.id")
        let plan = try planner.plan(tenants: tenants + [newcomer], existing: existing, now: now)
        #expect(plan.changed.count == 1)
        let changed = try #require(plan.changed.first)
        #expect(changed.id == "b003" && changed.isNew && changed.need == .issue)
        #expect(changed.members == [newcomer.id] && changed.names == newcomer.names)
        #expect(plan.bundles.filter { !$0.isNew }.map(\.members) == existing.map(\.members))
    }

    @Test("a village added where a bundle has room joins it: that bundle alone is reissued, for that name")
    func addWithRoom() throws {
        let tenants = try CertFixtures.bandung(aliases: false)
        let existing = CertFixtures.issued(try planner.plan(tenants: tenants, existing: [], now: now))
        // An id that sorts before every other still does not displace anyone.
        let newcomer = CertFixtures.tenant("32.04.01.1999", "desa-baru.bandungkab.go.id")
        let plan = try planner.plan(tenants: tenants + [newcomer], existing: existing, now: now)
        #expect(plan.bundles.count == 3)
        #expect(plan.changed.map(\.id) == ["b003"])
        #expect(plan.bundles[2].need == .reissue(added: ["desa-baru.bandungkab.go.id"]))
        #expect(plan.bundles[2].names.count == 81)
        #expect(plan.bundles[0].members == existing[0].members && plan.bundles[1].members == existing[1].members)
    }

    @Test("a village removed needs no order: its names linger on the old certificate until the next one")
    func removeTenant() throws {
        let tenants = try CertFixtures.bandung(aliases: true)
        let existing = CertFixtures.issued(try planner.plan(tenants: tenants, existing: [], now: now))
        let gone = existing[1].members[7]
        let plan = try planner.plan(tenants: tenants.filter { $0.id != gone }, existing: existing, now: now)
        #expect(plan.changed.isEmpty)
        #expect(plan.bundles.allSatisfy { $0.need == .none })
        let goneNames = tenants.first { $0.id == gone }!.names
        #expect(plan.bundles[1].staleNames == goneNames.sorted())
        #expect(!plan.bundles[1].members.contains(gone))
        #expect(plan.bundles.count == existing.count)
        // When the bundle falls due, the renewal leaves the names out.
        let later = now.addingTimeInterval(60 * CertFixtures.day)
        let due = try planner.plan(tenants: tenants.filter { $0.id != gone }, existing: existing, now: later)
        guard case .renew = due.bundles[1].need else {
            Issue.record("expected a renewal, got \(due.bundles[1].need)")
            return
        }
        #expect(!due.bundles[1].names.contains(where: goneNames.contains))
    }

    @Test("the plan does not depend on the order of tenants, bundles, members or held-out names")
    func shuffled() throws {
        let tenants = try CertFixtures.bandung(aliases: true)
        let half = Array(tenants.prefix(150))
        let existing = CertFixtures.issued(try planner.plan(tenants: half, existing: [], now: now))
        let held: Set<String> = [tenants[3].names[1], tenants[200].names[1]]
        let reference = try planner.plan(tenants: tenants, existing: existing, heldOut: held, now: now)
        #expect(reference.changed.count >= 2)
        for _ in 0..<5 {
            let shuffledBundles = existing.shuffled().map {
                CertBundle(id: $0.id, members: $0.members.shuffled(),
                           certificate: $0.certificate.map { CertificateInfo(names: $0.names.shuffled(), notBefore: $0.notBefore, notAfter: $0.notAfter) })
            }
            let again = try planner.plan(tenants: tenants.shuffled(), existing: shuffledBundles, heldOut: held, now: now)
            #expect(again == reference)
        }
    }

    @Test("a held-out alias leaves its bundle and is planned alone; the bundle is not reissued for it")
    func heldOutAlias() throws {
        let tenants = try CertFixtures.bandung(aliases: true)
        let first = try planner.plan(tenants: tenants, existing: [], now: now)
        let victim = tenants.first { $0.id == first.bundles[0].members[4] }!
        let alias = victim.names[1]
        let plan = try planner.plan(tenants: tenants, existing: [], heldOut: [alias, "nobody.desa.id"], now: now)
        #expect(!plan.bundles[0].names.contains(alias))
        #expect(plan.bundles[0].names.contains(victim.names[0]))
        #expect(plan.bundles[0].heldOut == [alias])
        #expect(plan.retries == [RetryOrder(name: alias, tenantID: victim.id, bundleID: "b001")])
        #expect(plan.unknownHeldOut == ["nobody.desa.id"])
        // Its slot is kept: the bundle's membership does not change.
        #expect(plan.bundles.map(\.members) == first.bundles.map(\.members))
        let orders = plan.orders(renewalsCarryARIReplaces: true)
        #expect(orders.contains(PlannedOrder(id: "retry:" + alias, names: [alias], purpose: .retry, tenantCount: 1)))

        // Issued without the alias: while it stays held out, nothing is needed.
        let existing = CertFixtures.issued(plan)
        let still = try planner.plan(tenants: tenants, existing: existing, heldOut: [alias], now: now)
        #expect(still.changed.isEmpty && still.retries.count == 1)
        // Once it validates, its bundle takes it back.
        let back = try planner.plan(tenants: tenants, existing: existing, now: now)
        #expect(back.changed.map(\.id) == ["b001"])
        #expect(back.bundles[0].need == .reissue(added: [alias]))
    }

    @Test("a tenant with more names than a bundle holds is refused, the others planned")
    func tooManyNames() throws {
        let big = CertTenant(id: "t-big", slug: "big", names: (1...101).map { "n\($0).bandungkab.go.id" })
        let small = CertFixtures.tenant("t-small", "small.bandungkab.go.id")
        let plan = try planner.plan(tenants: [big, small], existing: [], now: now)
        #expect(plan.refused.map(\.tenantID) == ["t-big"])
        #expect(plan.refused.first?.error.message.contains("101 names, more than the 100") == true)
        #expect(plan.bundles.map(\.members) == [["t-small"]])
        #expect(throws: DesaError.self) { try BundlePlanner(maxNamesPerBundle: 0) }
    }

    @Test("a name claimed by two tenants stays with the one already bundled")
    func nameConflict() throws {
        let a = CertFixtures.tenant("t-b", "shared.bandungkab.go.id")
        let existing = CertFixtures.issued(try planner.plan(tenants: [a], existing: [], now: now))
        let intruder = CertFixtures.tenant("t-a", "SHARED.bandungkab.go.id", "other.bandungkab.go.id")
        let plan = try planner.plan(tenants: [a, intruder], existing: existing, now: now)
        #expect(plan.refused.map(\.tenantID) == ["t-a"])
        #expect(plan.refused.first?.error.message.contains("tenant t-b already has") == true)
        #expect(plan.changed.isEmpty)
    }

    @Test("a member that outgrows its bundle moves to a new one; the rest stay untouched")
    func outgrow() throws {
        let small = try BundlePlanner(maxNamesPerBundle: 4)
        let a = CertFixtures.tenant("t1", "a.bandungkab.go.id", "a.desa.id")
        let b = CertFixtures.tenant("t2", "b.bandungkab.go.id", "b.desa.id")
        let existing = CertFixtures.issued(try small.plan(tenants: [a, b], existing: [], now: now))
        #expect(existing.map(\.members) == [["t1", "t2"]])
        let grown = CertFixtures.tenant("t2", "b.bandungkab.go.id", "b.desa.id", "www.b.desa.id")
        let plan = try small.plan(tenants: [a, grown], existing: existing, now: now)
        #expect(plan.bundles.map(\.members) == [["t1"], ["t2"]])
        #expect(plan.bundles[0].need == .none)
        #expect(plan.bundles[1].need == .issue && plan.bundles[1].id == "b002")
    }

    @Test("a bundle whose members all left is retired, not reissued")
    func retire() throws {
        let a = CertFixtures.tenant("t1", "a.bandungkab.go.id")
        let b = CertFixtures.tenant("t2", "b.bandungkab.go.id")
        let one = try BundlePlanner(maxNamesPerBundle: 1)
        let existing = CertFixtures.issued(try one.plan(tenants: [a, b], existing: [], now: now))
        let plan = try one.plan(tenants: [b], existing: existing, now: now)
        #expect(plan.bundles.map(\.need) == [.retire, .none])
        #expect(plan.changed.isEmpty)
    }

    @Test("a 6-day certificate is renewed after 4 days; ARI renewals are marked exempt in the orders")
    func renewal() throws {
        let tenants = Array(try CertFixtures.bandung(aliases: false).prefix(10))
        let initial = try planner.plan(tenants: tenants, existing: [], now: now)
        let issued = now
        let existing = CertFixtures.issued(initial, at: issued, lifetimeDays: 6)
        let before = try planner.plan(tenants: tenants, existing: existing, now: issued.addingTimeInterval(3.9 * CertFixtures.day))
        #expect(before.changed.isEmpty)
        #expect(before.bundles[0].renewalDue == issued.addingTimeInterval(4 * CertFixtures.day))
        let after = try planner.plan(tenants: tenants, existing: existing, now: issued.addingTimeInterval(4 * CertFixtures.day))
        #expect(after.bundles[0].need == .renew(due: issued.addingTimeInterval(4 * CertFixtures.day)))
        let orders = after.orders(renewalsCarryARIReplaces: true)
        #expect(orders.count == 1 && orders[0].purpose == .renewal && orders[0].replacesWithARI)
        #expect(after.orders(renewalsCarryARIReplaces: false)[0].replacesWithARI == false)
    }
}
