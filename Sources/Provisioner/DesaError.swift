/// The one error type of the control plane: a readable message plus a kind that
/// callers (and tests) can match on. Messages name the offending input.
public struct DesaError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        case invalidInput
        case notFound
        case conflict
        case config
        case system
        case checkFailed
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    static func invalid(_ message: String) -> DesaError { DesaError(.invalidInput, message) }
    static func system(_ message: String) -> DesaError { DesaError(.system, message) }
}
