import Foundation
import Testing
@testable import Provisioner

@Suite("When a certificate is due for renewal")
struct RenewalPolicyTests {
    let issued = Date(timeIntervalSince1970: 1_760_000_000)
    let day: TimeInterval = 86400
    let policy = RenewalPolicy()

    @Test("without ARI, due after two thirds of the lifetime, whatever the lifetime", arguments: [
        (90.0, 60.0), (45.0, 30.0), (6.0, 4.0),
    ])
    func twoThirds(lifetimeDays: Double, dueAfterDays: Double) {
        let notAfter = issued.addingTimeInterval(lifetimeDays * day)
        let due = policy.dueDate(notBefore: issued, notAfter: notAfter)
        #expect(abs(due.timeIntervalSince(issued) - dueAfterDays * day) < 0.001)
        #expect(!policy.isDue(notBefore: issued, notAfter: notAfter, now: due.addingTimeInterval(-1)))
        #expect(policy.isDue(notBefore: issued, notAfter: notAfter, now: due))
        #expect(policy.isDue(notBefore: issued, notAfter: notAfter, now: notAfter.addingTimeInterval(day)))
    }

    @Test("an ARI window wins over the lifetime rule, earlier or later")
    func ariWins() {
        let notAfter = issued.addingTimeInterval(90 * day)
        let early = RenewalWindow(start: issued.addingTimeInterval(10 * day), end: issued.addingTimeInterval(11 * day))
        #expect(policy.dueDate(notBefore: issued, notAfter: notAfter, ariWindow: early) == early.start)
        #expect(policy.isDue(notBefore: issued, notAfter: notAfter, ariWindow: early, now: issued.addingTimeInterval(10 * day)))
        #expect(!policy.isDue(notBefore: issued, notAfter: notAfter, now: issued.addingTimeInterval(10 * day)))
        let late = RenewalWindow(start: issued.addingTimeInterval(70 * day), end: issued.addingTimeInterval(72 * day))
        #expect(!policy.isDue(notBefore: issued, notAfter: notAfter, ariWindow: late, now: issued.addingTimeInterval(65 * day)))
        // A window ending before it starts is ignored.
        let broken = RenewalWindow(start: issued.addingTimeInterval(80 * day), end: issued.addingTimeInterval(1 * day))
        #expect(policy.dueDate(notBefore: issued, notAfter: notAfter, ariWindow: broken) == issued.addingTimeInterval(60 * day))
    }
}
