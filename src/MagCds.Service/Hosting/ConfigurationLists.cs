namespace MagCds.Service.Hosting;

/// <summary>
/// The .NET configuration binder drops an element of a list whose value has the wrong type (an API key or a client
/// certificate with <c>Admin: yes</c>) without a word, so a caller would simply be refused at run time. Binding each
/// element on its own throws instead, naming the setting: that message is what the start-up check reports (exit 78),
/// as it is for a single setting of the wrong type.
/// </summary>
public static class ConfigurationLists
{
    /// <summary>The binder's message for the first element of <paramref name="section"/> that cannot be bound as <typeparamref name="T"/>; null when all can.</summary>
    public static string? FirstUnbound<T>(IConfiguration config, string section)
    {
        foreach (var element in config.GetSection(section).GetChildren())
        {
            try { element.Get<T>(); }
            catch (InvalidOperationException e) { return e.Message; }
        }
        return null;
    }
}
