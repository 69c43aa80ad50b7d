using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;

namespace MagCds.Tests.Support;

/// <summary>
/// A loopback HTTP listener that keeps every request body it receives, by path, and answers 200: to see what a
/// component sends (log shipping), not to imitate the server it would send it to.
/// </summary>
public sealed class HttpCapture : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<(string Path, byte[] Body)> _received = new();

    private HttpCapture(WebApplication app) => _app = app;

    public string BaseUrl { get; private set; } = "";

    public static async Task<HttpCapture> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var capture = new HttpCapture(app);
        app.Run(async http =>
        {
            using var body = new MemoryStream();
            await http.Request.Body.CopyToAsync(body);
            capture._received.Enqueue((http.Request.Path.Value ?? "", body.ToArray()));
            http.Response.StatusCode = StatusCodes.Status200OK;
        });
        await app.StartAsync();
        capture.BaseUrl = app.Urls.First().TrimEnd('/') + "/";
        return capture;
    }

    /// <summary>How many requests arrived.</summary>
    public int Received => _received.Count;

    /// <summary>The bodies received on paths starting with <paramref name="prefix"/>, as UTF-8 text, one after another.</summary>
    public string Bodies(string prefix) => string.Join("\n",
        _received.Where(r => r.Path.StartsWith(prefix, StringComparison.Ordinal)).Select(r => System.Text.Encoding.UTF8.GetString(r.Body)));

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
