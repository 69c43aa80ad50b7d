using System.Text.Json;
using MagCds.Core.Knowledge;
using MagCds.Service.Hosting;

namespace MagCds.Service.Knowledge;

/// <summary>GET /knowledge: the knowledge the service runs, as loaded (cards link here as their source).</summary>
public static class KnowledgeEndpoints
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static IEndpointRouteBuilder MapKnowledge(this IEndpointRouteBuilder app)
    {
        app.MapRead("/knowledge", (KnowledgeBase kb) => Results.Json(kb, Json));
        return app;
    }
}
