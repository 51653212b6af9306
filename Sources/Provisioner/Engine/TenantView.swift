import Foundation

/// A tenant as `tenant list` and `tenant show` present it. Its JSON form is the
/// documented, stable output of `--json`.
public struct TenantView: Sendable {
    public var tenant: Tenant
    public var aliases: [String]
    public var domain: String
    public var user: String
    public var home: String

    public init(tenant: Tenant, aliases: [String], config: Config) {
        self.tenant = tenant
        self.aliases = aliases
        domain = tenant.primaryDomain(config)
        user = tenant.userName(prefix: config.userPrefix)
        home = tenant.home(config)
    }

    /// The documented JSON object of a tenant, built by SQLite itself: `tenant list --json`
    /// over 10,000 tenants has to finish in under 100 ms, process start included.
    /// Arguments: domain, web root, user prefix.
    static let jsonObjectSQL = """
        json_object(
          'code', code, 'slug', slug, 'name', name, 'kind', kind, 'district', districtName,
          'district_code', districtCode, 'domain', slug || '.' || ?1,
          'aliases', CASE WHEN EXISTS (SELECT 1 FROM alias WHERE alias.code = tenant.code)
                     THEN json((SELECT json_group_array(domain) FROM (SELECT domain FROM alias WHERE alias.code = tenant.code ORDER BY domain)))
                     ELSE json_array() END,
          'status', status, 'desired', desired, 'reason', reason, 'template', template, 'php', php,
          'user', ?3 || replace(code, '.', ''), 'uid', uid, 'home', ?2 || '/' || slug,
          'created_at', createdAt, 'updated_at', updatedAt)
        """
}
