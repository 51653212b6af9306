import Testing
@testable import Provisioner

/// The agent's "report each change once" rule, round after round, with no server at all.
@Suite("DriftState: each change said once")
struct DriftStateTests {
    typealias Round = DriftWatch.Round
    static let kulon = "32.04.05.2001", wetan = "32.04.05.2002"
    static let vhost = "create-config /etc/nginx/sites/cileunyi-kulon.conf"
    static let home = "fix-directory /srv/cileunyi-wetan"

    @Test("the first round reports its summary, converged or not")
    func firstRoundSummary() {
        var converged = DriftState()
        let clean = Round(tenants: 2)
        #expect(converged.next(clean) == [.summary(clean)])

        var drifted = DriftState()
        let r = Round(drifted: [Self.kulon: [Self.vhost]], tenants: 2)
        #expect(drifted.next(r) == [.tenantDrifted(code: Self.kulon, lines: [Self.vhost]), .summary(r)])
    }

    @Test("a converged server says nothing after its first round")
    func quietWhenConverged() {
        var s = DriftState()
        _ = s.next(Round(tenants: 2))
        #expect(s.next(Round(tenants: 2)).isEmpty)
        #expect(s.next(Round(tenants: 2, failed: 0)).isEmpty)
    }

    @Test("an unchanged drift is not repeated")
    func unchangedDriftNotRepeated() {
        var s = DriftState()
        let r = Round(drifted: [Self.kulon: [Self.vhost]], server: ["create-directory /srv"], tenants: 2)
        #expect(s.next(r).count == 3)
        #expect(s.next(r).isEmpty)
        #expect(s.next(r).isEmpty)
    }

    @Test("a tenant whose drift changed is reported again, with its new lines; the others are not")
    func changedLinesReReported() {
        var s = DriftState()
        _ = s.next(Round(drifted: [Self.kulon: [Self.vhost], Self.wetan: [Self.home]], tenants: 2))
        let more = [Self.vhost, "create-config /etc/php/pool.d/cileunyi-kulon.conf"]
        // Same number of drifted tenants: no new summary.
        #expect(s.next(Round(drifted: [Self.kulon: more, Self.wetan: [Self.home]], tenants: 2))
            == [.tenantDrifted(code: Self.kulon, lines: more)])
    }

    @Test("a repaired tenant is reported back in line once, with a new summary")
    func repairedTenantBackInLine() {
        var s = DriftState()
        _ = s.next(Round(drifted: [Self.kulon: [Self.vhost], Self.wetan: [Self.home]], tenants: 2))
        let repaired = Round(drifted: [Self.wetan: [Self.home]], tenants: 2)
        #expect(s.next(repaired) == [.tenantInLine(code: Self.kulon), .summary(repaired)])
        #expect(s.next(repaired).isEmpty)
        let all = Round(tenants: 2)
        #expect(s.next(all) == [.tenantInLine(code: Self.wetan), .summary(all)])
        #expect(s.next(all).isEmpty)
    }

    @Test("server drift is reported when it appears and when it changes, and its end changes the summary")
    func serverDriftOnChange() {
        var s = DriftState()
        _ = s.next(Round(tenants: 2))
        let dead = Round(server: ["php-fpm is not running"], tenants: 2)
        #expect(s.next(dead) == [.serverDrifted(lines: ["php-fpm is not running"]), .summary(dead)])
        #expect(s.next(dead).isEmpty)
        let both = Round(server: ["php-fpm is not running", "nginx is not running"], tenants: 2)
        #expect(s.next(both) == [.serverDrifted(lines: both.server)])
        let fixed = Round(tenants: 2)
        #expect(s.next(fixed) == [.summary(fixed)])
    }

    @Test("tenants are reported in code order")
    func codeOrder() {
        var s = DriftState()
        let r = Round(drifted: [Self.wetan: [Self.home], Self.kulon: [Self.vhost]], tenants: 2)
        #expect(s.next(r) == [.tenantDrifted(code: Self.kulon, lines: [Self.vhost]),
                              .tenantDrifted(code: Self.wetan, lines: [Self.home]), .summary(r)])
    }
}
