namespace SqliteSaver.Data.Configuration;

/// <summary>How the value of a connection-string keyword is parsed and validated.</summary>
internal enum KeywordKind
{
    Text,
    Boolean,
    Integer,
    Number,
    Enum,
}
