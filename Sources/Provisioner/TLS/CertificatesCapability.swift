import Foundation

/// HTTPS: owns `[tls]` and the certificate directory (root's, 0700). Certificates are
/// obtained outside apply (`desactl cert issue`, the agent's renewals: the CA is slow and
/// remote), and installed into the state database; the vhosts capability then serves each
/// tenant's valid certificates (`DesiredState.tls`), so a plan stays pure and fast.
public struct CertificatesCapability: Capability {
    public init() {}
    public var name: String { "certificates" }
    public var settings: [any ConfigSection.Type] { [TLSSettings.self] }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> [String: FileStat] {
        d.config.tls.enabled ? host.stats([d.config.certDir]) : [:]
    }

    public func plan(_ d: DesiredState, _ seen: [String: FileStat]) throws -> CapabilityPlan {
        guard d.config.tls.enabled else { return CapabilityPlan() }
        return CapabilityPlan(steps: Step.ensure([DirSpec(path: d.config.certDir, uid: 0, gid: 0, mode: 0o700)], nil, seen))
    }
}
