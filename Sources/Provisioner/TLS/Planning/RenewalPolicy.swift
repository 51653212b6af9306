import Foundation

/// A renewal window suggested by the CA through ACME Renewal Information (RFC 9773).
public struct RenewalWindow: Sendable, Equatable, Hashable, Codable {
    public var start: Date
    public var end: Date
    public init(start: Date, end: Date) {
        self.start = start
        self.end = end
    }
}

/// When a certificate is due for renewal. A pure function of the certificate's validity,
/// the CA's ARI window if known, and the time passed in; it assumes no lifetime (90-day,
/// 45-day and 6-day certificates are all handled by the same rule).
///
/// - With an ARI window: due at the window's start. (RFC 9773 suggests a random moment
///   inside the window; this is the deterministic choice, and the earliest safe one. A
///   window whose end precedes its start is ignored as malformed.)
/// - Without: due when `lifetimeFraction` (default two thirds) of the lifetime
///   `notAfter - notBefore` has passed.
public struct RenewalPolicy: Sendable, Equatable, Hashable, Codable {
    /// The share of the lifetime after which a certificate without an ARI window is due.
    public var lifetimeFraction: Double

    public init(lifetimeFraction: Double = 2.0 / 3.0) {
        self.lifetimeFraction = min(max(lifetimeFraction, 0), 1)
    }

    public func dueDate(notBefore: Date, notAfter: Date, ariWindow: RenewalWindow? = nil) -> Date {
        if let w = ariWindow, w.end >= w.start { return w.start }
        let lifetime = max(0, notAfter.timeIntervalSince(notBefore))
        return notBefore.addingTimeInterval(lifetime * lifetimeFraction)
    }

    public func isDue(notBefore: Date, notAfter: Date, ariWindow: RenewalWindow? = nil, now: Date) -> Bool {
        now >= dueDate(notBefore: notBefore, notAfter: notAfter, ariWindow: ariWindow)
    }
}
