import Foundation

/// The JSON resources of RFC 8555 §7.1, as far as the client reads them.
struct ACMEDirectory: Decodable, Sendable {
    struct Meta: Decodable, Sendable {
        var termsOfService: String?
        var website: String?
        var externalAccountRequired: Bool?
        /// Profile name → description (draft-aaron-acme-profiles, served by Let's Encrypt).
        var profiles: [String: String]?
    }

    var newNonce: String
    var newAccount: String
    var newOrder: String
    var revokeCert: String?
    var keyChange: String?
    /// RFC 9773.
    var renewalInfo: String?
    var meta: Meta?
}

protocol ACMEStatusResource: Decodable, Sendable {
    var status: String { get }
}

struct ACMEIdentifier: Codable, Sendable {
    var type: String
    var value: String
}

struct ACMEProblemDocument: Decodable, Sendable {
    struct Sub: Decodable, Sendable {
        var type: String?
        var detail: String?
        var identifier: ACMEIdentifier?
    }

    var type: String?
    var detail: String?
    var status: Int?
    var subproblems: [Sub]?

    func problem(status httpStatus: Int? = nil, retryAfter: Date? = nil, url: String?) -> ACMEProblem {
        ACMEProblem(type: type ?? "about:blank", detail: detail ?? "(no detail)", status: status ?? httpStatus,
                    subproblems: (subproblems ?? []).map {
                        .init(identifier: $0.identifier.map { "\($0.type):\($0.value)" } ?? "",
                              type: $0.type ?? "about:blank", detail: $0.detail ?? "")
                    },
                    retryAfter: retryAfter, url: url)
    }
}

struct ACMEAccountResource: ACMEStatusResource {
    var status: String
    var contact: [String]?
}

struct ACMEOrderResource: ACMEStatusResource {
    var status: String
    var identifiers: [ACMEIdentifier]?
    var authorizations: [String]
    var finalize: String
    var certificate: String?
    var error: ACMEProblemDocument?
}

struct ACMEChallengeResource: Decodable, Sendable {
    var type: String
    var url: String
    var status: String
    var token: String?
    var error: ACMEProblemDocument?
}

struct ACMEAuthorizationResource: ACMEStatusResource {
    var identifier: ACMEIdentifier
    var status: String
    var challenges: [ACMEChallengeResource]
    var wildcard: Bool?

    /// The name as it was ordered: `*.` put back for a wildcard.
    var name: String { (wildcard == true ? "*." : "") + identifier.value }
}

struct ACMERenewalInfoResource: Decodable, Sendable {
    struct Window: Decodable, Sendable {
        var start: String
        var end: String
    }

    var suggestedWindow: Window
    var explanationURL: String?
}
