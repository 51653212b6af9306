import Foundation
import Testing
@testable import Provisioner

@Suite("Keeping under the CA's rate limits")
struct IssuanceLedgerTests {
    let psl: PublicSuffixList
    let now = CertFixtures.now
    let minute: TimeInterval = 60
    let hour: TimeInterval = 3600
    let day: TimeInterval = 86400

    init() throws {
        psl = try PublicSuffixList.system()
    }

    func budget(domain: Budget.Limit? = nil, orders: Budget.Limit? = nil, failures: Budget.Limit? = nil,
                backoff: Budget.Backoff? = nil) -> Budget {
        var b = Budget.letsEncrypt
        if let domain { b.certificatesPerRegisteredDomain = domain }
        if let orders { b.ordersPerAccount = orders }
        if let failures { b.authorizationFailuresPerIdentifier = failures }
        if let backoff { b.retryBackoff = backoff }
        return b
    }

    /// Five new bundles of Kab. Bandung villages, two per bundle.
    func fiveNewBundles() throws -> [PlannedOrder] {
        let tenants = Array(try CertFixtures.bandung(aliases: false).prefix(10))
        let plan = try BundlePlanner(maxNamesPerBundle: 2).plan(tenants: tenants, existing: [], now: now)
        return plan.orders(renewalsCarryARIReplaces: true)
    }

    @Test("with 2 certificates per registered domain, 5 new bundles: 2 go now, 3 wait for each refill")
    func domainBucket() throws {
        let orders = try fiveNewBundles()
        #expect(orders.count == 5)
        let ledger = IssuanceLedger(history: [], budget: budget(domain: Budget.Limit(capacity: 2, refillInterval: 202 * minute)),
                                    suffixes: psl)
        let s = ledger.schedule(orders: orders, now: now)
        #expect(s.map(\.order.id) == ["b001", "b002", "b003", "b004", "b005"])
        #expect(s.map(\.at) == [now, now, now + 202 * minute, now + 404 * minute, now + 606 * minute])
        #expect(s.map(\.isQueued) == [false, false, true, true, true])
        #expect(s[2].delayedBy == .certificatesPerRegisteredDomain("bandungkab.go.id"))
        #expect(s[2].delayedBy?.description == "new certificates per registered domain bandungkab.go.id")
    }

    @Test("the real limit: 50 per 7 days refills one every 201.6 minutes")
    func realDomainLimit() throws {
        let names = ["a.bandungkab.go.id"]
        let history = (0..<50).map { LedgerEvent(time: now - Double($0) * minute, kind: .certificate(names: ["v\($0).bandungkab.go.id"], renewalWithARI: false)) }
        let ledger = IssuanceLedger(history: history, budget: .letsEncrypt, suffixes: psl)
        let s = ledger.schedule(orders: [PlannedOrder(id: "b001", names: names, purpose: .issue, tenantCount: 1)], now: now)
        // The oldest of the 50 was 49 minutes ago; the bucket holds one token again
        // 201.6 minutes after the first.
        #expect(s[0].at == now - 49 * minute + 12_096)  // 201.6 minutes
        #expect(s[0].delayedBy == .certificatesPerRegisteredDomain("bandungkab.go.id"))
    }

    @Test("an ARI renewal goes now even when the registered domain's bucket is empty; a plain one waits")
    func ariExempt() throws {
        let full = (0..<2).map { LedgerEvent(time: now - Double($0) * minute, kind: .certificate(names: ["x\($0).bandungkab.go.id"], renewalWithARI: false)) }
        let ledger = IssuanceLedger(history: full, budget: budget(domain: Budget.Limit(capacity: 2, refillInterval: 202 * minute),
                                                                   orders: Budget.Limit(capacity: 1, refillInterval: hour)),
                                    suffixes: psl)
        let names = ["a.bandungkab.go.id", "b.bandungkab.go.id"]
        let ari = PlannedOrder(id: "b001", names: names, purpose: .renewal, tenantCount: 2, renewalDue: now, replacesWithARI: true)
        let plain = PlannedOrder(id: "b002", names: ["c.bandungkab.go.id"], purpose: .renewal, tenantCount: 1, renewalDue: now)
        let s = ledger.schedule(orders: [plain, ari], now: now)
        let byID = Dictionary(uniqueKeysWithValues: s.map { ($0.order.id, $0) })
        #expect(byID["b001"]?.at == now && byID["b001"]?.isQueued == false)
        #expect(byID["b002"]?.isQueued == true)
        #expect(byID["b002"]?.delayedBy == .certificatesPerRegisteredDomain("bandungkab.go.id"))
        // ARI renewal events in the history do not drain the bucket either.
        let renewals = (0..<10).map { LedgerEvent(time: now - Double($0) * minute, kind: .certificate(names: names, renewalWithARI: true)) }
        let other = IssuanceLedger(history: renewals, budget: budget(domain: Budget.Limit(capacity: 2, refillInterval: 202 * minute)), suffixes: psl)
        #expect(other.usage(ofRegisteredDomain: "bandungkab.go.id", now: now).remaining == 2)
    }

    @Test("the duplicate limit: the same set of names, in any order and case, waits; a different set does not")
    func duplicates() throws {
        let names = ["a.bandungkab.go.id", "a.desa.id"]
        let history = (0..<5).map { _ in LedgerEvent(time: now - hour, kind: .certificate(names: names, renewalWithARI: true)) }
        let ledger = IssuanceLedger(history: history, budget: .letsEncrypt, suffixes: psl)
        let same = PlannedOrder(id: "b001", names: ["A.DESA.ID", "a.bandungkab.go.id"], purpose: .renewal, tenantCount: 1,
                                renewalDue: now, replacesWithARI: true)
        let grown = PlannedOrder(id: "b002", names: names + ["b.bandungkab.go.id"], purpose: .reissue, tenantCount: 2)
        let s = ledger.schedule(orders: [same, grown], now: now)
        // Five at once fill the bucket; one token returns 7 days / 5 = 33.6 h later.
        #expect(s[0].at == now - hour + 120_960)  // 33.6 hours
        #expect(s[0].delayedBy == .duplicateCertificate)
        #expect(s[1].at == now && !s[1].isQueued)
    }

    @Test("the account's new-orders bucket queues orders past its capacity")
    func ordersBucket() throws {
        let orders = try fiveNewBundles()
        let ledger = IssuanceLedger(history: [LedgerEvent(time: now - minute, kind: .order())],
                                    budget: budget(orders: Budget.Limit(3, per: 3 * hour)), suffixes: psl)
        let s = ledger.schedule(orders: orders, now: now)
        #expect(s.map(\.at) == [now, now, now - minute + hour, now - minute + 2 * hour, now - minute + 3 * hour])
        #expect(s[2].delayedBy == .ordersPerAccount)
    }

    @Test("renewals first, then the bundles with the most tenants, then retries")
    func priority() throws {
        let ledger = IssuanceLedger(history: [], budget: budget(orders: Budget.Limit(capacity: 1, refillInterval: hour)), suffixes: psl)
        let orders = [
            PlannedOrder(id: "retry:z.desa.id", names: ["z.desa.id"], purpose: .retry, tenantCount: 1),
            PlannedOrder(id: "b003", names: ["c.bandungkab.go.id"], purpose: .issue, tenantCount: 1),
            PlannedOrder(id: "b002", names: ["b.bandungkab.go.id", "b2.bandungkab.go.id"], purpose: .reissue, tenantCount: 2),
            PlannedOrder(id: "b009", names: ["r.bandungkab.go.id"], purpose: .renewal, tenantCount: 1, renewalDue: now - day),
            PlannedOrder(id: "b001", names: ["q.bandungkab.go.id"], purpose: .renewal, tenantCount: 1, renewalDue: now - hour),
        ]
        let s = ledger.schedule(orders: orders.shuffled(), now: now)
        #expect(s.map(\.order.id) == ["b009", "b001", "b002", "b003", "retry:z.desa.id"])
        #expect(s.map(\.at) == (0..<5).map { now + Double($0) * hour })
    }

    @Test("a held-out name is retried with backoff doubling from 1 hour to a week")
    func backoff() throws {
        let name = "cileunyikulon.desa.id"
        var ledger = IssuanceLedger(history: [], budget: .default, suffixes: psl)
        let retry = PlannedOrder(id: "retry:" + name, names: [name], purpose: .retry, tenantCount: 1)
        var t = now
        var times: [Date] = []
        for _ in 0..<12 {
            let s = ledger.schedule(orders: [retry], now: t)[0]
            times.append(s.at)
            if times.count > 1 {
                #expect(s.delayedBy == .retryBackoff(name: name, failures: times.count - 1))
            }
            ledger.record(LedgerEvent(time: s.at, kind: .authorizationFailure(name: name)))
            t = s.at
        }
        let gaps = zip(times, times.dropFirst()).map { $1.timeIntervalSince($0) / hour }
        #expect(gaps == [1, 2, 4, 8, 16, 32, 64, 128, 168, 168, 168])
        #expect(ledger.consecutiveFailures(of: name) == 12)
        // A certificate naming it ends the streak.
        ledger.record(LedgerEvent(time: t + hour, kind: .certificate(names: [name], renewalWithARI: false)))
        #expect(ledger.consecutiveFailures(of: name) == 0)
        #expect(ledger.schedule(orders: [retry], now: t + 2 * hour)[0].isQueued == false)
    }

    @Test("never more than 5 authorization failures per name in any hour, even with a short backoff")
    func failureWindow() throws {
        let name = "cileunyikulon.desa.id"
        let b = budget(failures: Budget.Limit(5, per: hour), backoff: Budget.Backoff(base: minute, cap: day))
        var ledger = IssuanceLedger(history: [], budget: b, suffixes: psl)
        let retry = PlannedOrder(id: "retry:" + name, names: [name], purpose: .retry, tenantCount: 1)
        var t = now
        var failures: [Date] = []
        var limited = 0
        for _ in 0..<30 {
            let s = ledger.schedule(orders: [retry], now: t)[0]
            if s.delayedBy == .authorizationFailures(name: name) { limited += 1 }
            failures.append(s.at)
            ledger.record(LedgerEvent(time: s.at, kind: .authorizationFailure(name: name)))
            t = s.at
        }
        #expect(limited > 0)
        for f in failures {
            let inHour = failures.filter { $0 > f - hour && $0 <= f }.count
            #expect(inHour <= 5, "\(inHour) failures in the hour before \(f)")
        }
        // A bundle order that names it waits too: the CA would refuse the new order.
        let five = (0..<5).map { LedgerEvent(time: now - Double($0) * minute, kind: .authorizationFailure(name: name)) }
        let fresh = IssuanceLedger(history: five, budget: b, suffixes: psl)
        let bundle = PlannedOrder(id: "b001", names: ["cileunyi-kulon.bandungkab.go.id", name], purpose: .reissue, tenantCount: 1)
        let s = fresh.schedule(orders: [bundle], now: now)[0]
        #expect(s.at == now - 4 * minute + hour && s.delayedBy == .authorizationFailures(name: name))
    }

    @Test("usage per registered domain: used in the window, tokens left, next refill")
    func usage() throws {
        let history = [
            LedgerEvent(time: now - 2 * hour, kind: .certificate(names: ["a.bandungkab.go.id", "a.desa.id"], renewalWithARI: false)),
            LedgerEvent(time: now - hour, kind: .certificate(names: ["b.bandungkab.go.id"], renewalWithARI: false)),
            LedgerEvent(time: now, kind: .certificate(names: ["c.bandungkab.go.id", "d.bandungkab.go.id"], renewalWithARI: false)),
            LedgerEvent(time: now - 8 * day, kind: .certificate(names: ["old.desa.id"], renewalWithARI: false)),
            LedgerEvent(time: now, kind: .order()),
        ]
        let ledger = IssuanceLedger(history: history.shuffled(), budget: .default, suffixes: psl)
        let u = ledger.usage(now: now)
        #expect(u.map(\.key) == ["a.desa.id", "bandungkab.go.id", "old.desa.id"])
        let bandung = u[1]
        // 45 per 7 days: one token per 224 minutes (13,440 s). Three used, 42 left; the
        // bucket's debt is 3 × 13,440 s - 2 h = 33,120 s, so the 43rd token returns when
        // it falls to 2 × 13,440 s: at now + 6,240 s.
        #expect(bandung.usedInWindow == 3 && bandung.capacity == 45 && bandung.remaining == 42)
        #expect(bandung.nextRefill == now + 6240)
        #expect(u[2].usedInWindow == 0 && u[2].remaining == 45 && u[2].nextRefill == nil)
        #expect(ledger.orderUsage(now: now).remaining == 269)
        #expect(ledger.usage(ofRegisteredDomain: "x.y.bandungkab.go.id", now: now) == bandung)
    }

    @Test("ledger rows round-trip through their flat Codable form, and history order does not matter")
    func rows() throws {
        let events = [
            LedgerEvent(time: now, kind: .order(renewalWithARI: true)),
            LedgerEvent(time: now + 1, kind: .certificate(names: ["a.bandungkab.go.id", "a.desa.id"], renewalWithARI: false)),
            LedgerEvent(time: now + 2, kind: .authorizationFailure(name: "a.desa.id")),
        ]
        let data = try JSONEncoder().encode(events)
        let json = String(decoding: data, as: UTF8.self)
        #expect(json.contains("\"kind\":\"authorizationFailure\"") && json.contains("\"renewalWithARI\":true"))
        #expect(try JSONDecoder().decode([LedgerEvent].self, from: data) == events)
        let a = IssuanceLedger(history: events, suffixes: psl)
        let b = IssuanceLedger(history: events.reversed(), suffixes: psl)
        #expect(a == b)
    }
}

@Suite("Certificate planning at the scale of the whole country")
struct CertPlanningScaleTests {
    @Test("83,762 villages, two names each: planned and scheduled (time printed)")
    func country() throws {
        let now = CertFixtures.now
        let count = 83_762
        var tenants: [CertTenant] = []
        tenants.reserveCapacity(count)
        for i in 0..<count {
            let regency = i / 163  // about 514 regencies
            let slug = "desa-\(i)"
            tenants.append(CertTenant(id: String(format: "%06ld", i), slug: slug,
                                      names: ["\(slug).kab\(regency).go.id", "desa\(i).desa.id"]))
        }
        let psl = try PublicSuffixList.system()
        let planner = try BundlePlanner()
        var start = Date()
        let plan = try planner.plan(tenants: tenants.shuffled(), existing: [], now: now)
        let planTime = Date().timeIntervalSince(start)
        #expect(plan.bundles.count == Int((Double(count * 2) / 100).rounded(.up)))
        #expect(plan.refused.isEmpty)

        // The next day, one village more: one order.
        let existing = CertFixtures.issued(plan, at: now)
        start = Date()
        let next = try planner.plan(tenants: tenants + [CertTenant(id: "999999", slug: "baru", names: ["baru.kab0.go.id"])],
                                    existing: existing, now: now + 86400)
        let replanTime = Date().timeIntervalSince(start)
        #expect(next.changed.count == 1)

        start = Date()
        let ledger = IssuanceLedger(history: [], budget: .default, suffixes: psl)
        let schedule = ledger.schedule(orders: plan.orders(renewalsCarryARIReplaces: true), now: now)
        let scheduleTime = Date().timeIntervalSince(start)
        let last = schedule.map(\.at).max()!
        #expect(schedule.count == plan.bundles.count)
        print(String(format: "country: %ld tenants -> %ld bundles planned in %.2f s; re-planned with one more in %.2f s; %ld orders scheduled in %.2f s, the last %.1f h from now",
                     count, plan.bundles.count, planTime, replanTime, schedule.count, scheduleTime, last.timeIntervalSince(now) / 3600))
    }
}
