namespace MagCds.Service.Hosting;

/// <summary>
/// Every route that answers GET also answers HEAD (RFC 9110 §9.1: a general-purpose server must support both): the
/// same handler runs, and Kestrel sends the status and headers without the body. Load balancers and uptime monitors
/// probe with HEAD.
/// </summary>
public static class ReadRoutes
{
    private static readonly string[] Methods = [HttpMethods.Get, HttpMethods.Head];

    /// <summary>A read route: GET and HEAD.</summary>
    public static RouteHandlerBuilder MapRead(this IEndpointRouteBuilder app, string pattern, Delegate handler) =>
        app.MapMethods(pattern, Methods, handler);

    /// <summary>Limits an endpoint mapped for every method (a health check) to GET and HEAD; other methods get 405.</summary>
    public static TBuilder ReadOnly<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new HttpMethodMetadata(Methods));
}
