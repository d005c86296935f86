namespace SqliteSaver.Data.Diagnostics;

/// <summary>Why the pool closed a physical connection, for the log.</summary>
internal enum CloseReason
{
    /// <summary>Pooling=False: every connection closes on return.</summary>
    PoolingOff,

    /// <summary>The pool was cleared, so connections of the old generation close.</summary>
    Cleared,

    /// <summary>The data source was disposed.</summary>
    Disposed,

    /// <summary>It stayed idle for Connection Idle Lifetime.</summary>
    Idle,

    /// <summary>It held TEMP objects, attached databases, a kept read snapshot or a setting that cannot be set back, or rolling back failed: it is replaced by a fresh one when needed.</summary>
    NotReset,

    /// <summary>Its <see cref="SaverDbConnection"/> was garbage collected while open.</summary>
    Leaked,

    /// <summary>The checkpointer's own connection, outside the pool, closes with the pool's last connection.</summary>
    PoolEmpty,

    /// <summary>Opened to keep a pooled in-memory database alive, which a connection opened at the same time does already.</summary>
    Redundant,
}
